"""Registries: name → class or factory, filled where each object is defined.

    CONVS = Registry("conv")

    @CONVS.register("edge")
    class EdgeConv(GraphConv): …

One place lists what exists (`pointgcn info` prints every registry), and a config names an
object without a table that has to be kept in step with the code. A registry may name
`plugins`: modules, outside the package that owns the registry, whose import registers more
entries; they are imported the first time a name is looked up or the names are listed, so a
listing is never missing an entry that a lookup would find.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator

from .errors import ConfigError


class Registry:
    def __init__(self, label: str, plugins: dict[str, str] | None = None):
        """`label` names the config key in error messages (e.g. "conv", "data.dataset")."""
        self.label = label
        self._entries: dict[str, Any] = {}
        self._info: dict[str, dict] = {}
        self._aliases: dict[str, str] = {}
        self._plugins = dict(plugins or {})

    def register(self, name: str, *, aliases: tuple[str, ...] = (), **info) -> Callable:
        """Decorator: add the object under `name` (and `aliases`, accepted but not listed);
        `info` is kept for `info(name)` (e.g. the config options a conv takes)."""
        def add(obj):
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.label} {key!r} is registered twice")
            self._entries[name] = obj
            self._info[name] = info
            self._aliases.update({alias: name for alias in aliases})
            return obj
        return add

    def _load_plugins(self) -> None:
        while self._plugins:
            _, module = self._plugins.popitem()
            importlib.import_module(module)

    def canonical(self, name) -> str:
        """The registered name `name` stands for, or a ConfigError listing the names."""
        if isinstance(name, str):
            name = self._aliases.get(name, name)
            if name not in self._entries and name in self._plugins:
                importlib.import_module(self._plugins.pop(name))
            if name in self._entries:
                return name
        raise ConfigError(f"{self.label} must be one of {', '.join(self.names())}, "
                          f"got {name!r}")

    def get(self, name) -> Any:
        return self._entries[self.canonical(name)]

    def info(self, name) -> dict:
        return self._info[self.canonical(name)]

    def names(self) -> list[str]:
        """Every registered name (aliases left out), plugins included, in registration order."""
        self._load_plugins()
        return list(self._entries)

    def __contains__(self, name) -> bool:
        try:
            self.canonical(name)
        except ConfigError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.label!r}: {', '.join(self.names())})"
