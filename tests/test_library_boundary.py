"""The library does not know the command line: its messages name no flags and it prints
nothing; apps/cli.py says a setting an error names as the stage's flag, prints the library's
progress lines on stdout and its warnings as `note: …` on stderr."""
import ast
import logging
import re
from pathlib import Path

from apps.cli import main
from pointgcn.errors import ConfigError, FormatError, InputError, Setting

PACKAGE = Path(__file__).resolve().parents[1] / "pointgcn"
FLAG = re.compile(r"(?<![\w-])--[a-z]")
ARGUMENT = re.compile(r"--[a-z][a-z0-9-]*(=\S*)?")  # one argv token of a subprocess it runs


def _strings(tree: ast.AST):
    """(line, text) of every string constant but docstrings."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent), ast.parse(path.read_text(encoding="utf-8"))


def test_library_messages_name_no_command_line_flags():
    """Messages, notes and report lines; argv tokens of its own subprocesses are no message."""
    found = [f"{where}:{line}: {text!r}" for where, tree in _modules()
             for line, text in _strings(tree)
             if FLAG.search(text) and not ARGUMENT.fullmatch(text)]
    assert not found, "name the setting (errors.Setting), not a flag:\n" + "\n".join(found)


def test_the_library_prints_nothing():
    found = [f"{where}:{node.lineno}" for where, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
    assert not found, "use logging (info: progress, warning: notes):\n" + "\n".join(found)


def test_a_setting_is_said_the_library_way_until_a_caller_renames_it():
    err = FormatError("{where}: pass {drop} to drop {n} points {{x}}", where="a{b}.ply", n=2,
                      drop=Setting("drop_invalid", "drop_invalid=True"))
    assert str(err) == "a{b}.ply: pass drop_invalid=True to drop 2 points {x}"
    flagged = err.renamed({"drop_invalid": "--drop-invalid", "where": "--where"})
    assert type(flagged) is FormatError and isinstance(flagged, InputError)
    assert str(flagged) == "a{b}.ply: pass --drop-invalid to drop 2 points {x}"  # data kept
    assert err.renamed({"other": "--other"}) is err
    plain = ConfigError("no {fields} here")  # without fields a message is taken as it is
    assert str(plain) == "no {fields} here" and plain.renamed({"fields": "--x"}) is plain


def test_the_cli_says_the_stages_flag_for_a_setting(tmp_path, capsys):
    """The same library error reads with each stage's own flag (a stage's SETTINGS map the
    library's names it exposes otherwise: `overrides` is --model-config for export)."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read: the overrides are refused first")
    assert main(["export", str(onnx), "--out", str(tmp_path / "o.onnx"), "--model-config",
                 "k=3"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: --model-config cannot change an .onnx model"


def test_the_cli_prints_progress_on_stdout_and_notes_on_stderr(capsys):
    assert main(["info"]) == 0  # routes the library's logging
    capsys.readouterr()
    log = logging.getLogger("pointgcn.engine.trainer")
    log.info("epoch 1: val oa 0.5000")
    log.warning("something was repaired")
    out, err = capsys.readouterr()
    assert out == "epoch 1: val oa 0.5000\n" and err == "note: something was repaired\n"

