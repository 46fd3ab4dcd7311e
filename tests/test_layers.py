"""The package's layers: every import of a pointgcn module points down `LAYERS`.

Walks every module of pointgcn/ with `ast` — module-level and function-level imports, relative
and absolute — and fails on any import of a higher layer, naming the file, the line and the
two layers. docs/architecture.md states the same order.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pointgcn"

# Lowest first; a module may import its own layer and those before it. The small top-level
# modules sit under io: errors for everyone, then the three torch-free tables, then configs
# and registries. nas is on top: it times searched cells through export (onnxruntime) and
# plots its Pareto front through viz.
LAYERS = ("pointgcn", "errors", "tasks", "seeds", "config", "registry",
          "io", "data", "graph", "nn", "models", "engine", "export", "viz", "nas")

# The one upward reach, and why it is no import: models/registry.py names the module that
# registers the "nas" model (`Registry(plugins={"nas": "pointgcn.nas.network"})`). That name is
# a string, imported only when a config asks for `name: nas` or the models are listed — by then
# the caller has all of pointgcn at hand — so models never imports nas and a NAS config still
# builds through `build_model`. (layer of the registry's module, plugin module)
# The other plugin stays within its layer: data/build.py names data/pyg_dataset.py (PyG's data
# sets), which registers into build's DATASETS and so cannot be imported by build.
REGISTRY_PLUGINS = {("models", "pointgcn.nas.network"), ("data", "pointgcn.data.pyg_dataset")}


# Imported inside functions, each with a one-line reason where it is: heavy or optional
# third-party packages that only some inputs or outputs need. Everything else, the package's
# own modules above all, is imported at the top of its module.
LAZY = {"open3d", "trimesh", "laspy", "pye57", "onnxruntime", "torch_cluster", "matplotlib",
        "torch_geometric", "onnxruntime_extensions",
        "mpl_toolkits"}


def layer_of(module: str) -> str:
    """"pointgcn.export.serve" → "export"; the package root itself → "pointgcn"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(line, pointgcn module) for every import anywhere in `tree`, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:  # `from pointgcn import nas`: the layer is the name's
                name = f"{target}.{alias.name}"
                yield node.lineno, name if target == "pointgcn" and layer_of(name) in LAYERS \
                    else target


def registry_plugins(tree: ast.AST):
    """(line, plugin module) of every `Registry(…, plugins={…: "module"})` in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry":
            for kw in node.keywords:
                if kw.arg == "plugins" and isinstance(kw.value, ast.Dict):
                    for value in kw.value.values:
                        yield node.lineno, value.value


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    """'file:line: <layer> imports <higher layer> (module)' for each import against LAYERS."""
    module = module_name(path, root)
    own = LAYERS.index(layer_of(module))
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = path.relative_to(root.parent)
    found = []
    for line, target in imported_modules(tree, module, path.name == "__init__.py"):
        if target.split(".")[0] != "pointgcn":
            continue
        other = layer_of(target)
        if LAYERS.index(other) > own:
            found.append(f"{where}:{line}: {layer_of(module)} imports {other} ({target})")
    for line, target in registry_plugins(tree):
        other = layer_of(target)
        if LAYERS.index(other) > own and (layer_of(module), target) not in REGISTRY_PLUGINS:
            found.append(f"{where}:{line}: {layer_of(module)} names the plugin {target} of "
                         f"{other} (add it to REGISTRY_PLUGINS only with a reason)")
    return found


def test_imports_inside_functions_are_only_heavy_optional_packages():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    tops = ["pointgcn" if node.level else node.module.split(".")[0]]
                else:
                    continue
                found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {top} in "
                          f"{fn.name}()" for top in tops if top not in LAZY]
    assert not found, "import these at the top of the module:\n" + "\n".join(found)


def test_every_sub_package_and_top_level_module_has_a_layer():
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert names - set(LAYERS) == set(), "place it in LAYERS (and docs/architecture.md)"


def test_imports_follow_the_layers():
    found = [v for path in sorted(PACKAGE.rglob("*.py")) for v in violations(path)]
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_the_registry_plugin_is_the_only_upward_reach_and_is_still_there():
    plugins = {(layer_of(module_name(path)), target) for path in sorted(PACKAGE.rglob("*.py"))
               for _, target in registry_plugins(ast.parse(path.read_text(encoding="utf-8")))}
    assert plugins == REGISTRY_PLUGINS  # a stale allowance is removed, not kept


def test_architecture_doc_states_this_order():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert " → ".join(LAYERS[LAYERS.index("io"):]) in doc


@pytest.mark.parametrize("source, expected", [
    ("from ..export import serve\n", "engine imports export (pointgcn.export)"),
    ("def f():\n    from ..nas.genotype import Genotype\n",
     "x.py:2: engine imports nas (pointgcn.nas.genotype)"),
    ("import pointgcn.viz.plots\n", "engine imports viz (pointgcn.viz.plots)"),
    ("from pointgcn import nas\n", "engine imports nas (pointgcn.nas)"),
    ("from .. import export\n", "engine imports export (pointgcn.export)"),
    ("R = Registry('x', plugins={'y': 'pointgcn.nas.cell'})\n",
     "engine names the plugin pointgcn.nas.cell of nas"),
])
def test_the_check_fails_on_an_upward_import(tmp_path, source, expected):
    """The walker itself: a module of engine/ importing upward in each way is reported."""
    root = tmp_path / "pointgcn"
    (root / "engine").mkdir(parents=True)
    path = root / "engine" / "x.py"
    path.write_text(source + "from ..models import build_model\nimport numpy\n")
    found = violations(path, root)
    assert len(found) == 1 and expected in found[0], found
