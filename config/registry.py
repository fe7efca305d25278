"""Plugins by name, one way for all: sources, raw layouts, feature sets and models.

A registry holds one registration line per plugin, ``name → module`` (or ``name → (tag...,
module)``, e.g. a feature set's modality, readable without importing it); the module registers
the plugin (``registry.register(name, entry)``) when it is first imported, which
``get(name)`` does on first use. So ``names()`` imports no plugin, and params can name a
plugin that is never loaded unless it runs. Each plugin may declare its own params model
(pydantic), which the params loader (tasks/params.py) validates its section with.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``names()``, ``get(name)``, ``register(name, entry)``: the verbs of every registry."""

    def __init__(self, kind: str, lines: MutableMapping[str, str | tuple[str, ...]]) -> None:
        self.kind = kind  # "source", "layout", "feature set", "model": for messages
        self.lines = lines  # name -> the module that registers it, or (tags..., module)
        self._entries: dict[str, T] = {}

    def module(self, name: str) -> str:
        """The module that registers ``name``."""
        line = self.lines[name]
        return line if isinstance(line, str) else line[-1]

    def names(self) -> list[str]:
        """Every registered name, sorted, without importing any plugin."""
        return sorted(self.lines)

    def __contains__(self, name: object) -> bool:
        return name in self.lines

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unknown(self, name: object) -> str:
        """The message for a name the registry does not hold."""
        return f"unknown {self.kind} {name!r}; expected one of {self.names()}"

    def get(self, name: str) -> T:
        """The plugin registered as ``name``; its module is imported on first use."""
        if name not in self.lines:
            raise KeyError(self.unknown(name))
        if name not in self._entries:
            importlib.import_module(self.module(name))
        if name not in self._entries:
            raise KeyError(f"{self.module(name)} registers no {self.kind} {name!r}")
        return self._entries[name]

    def register(self, name: str, entry: T) -> T:
        """Make ``entry`` the plugin called ``name`` (called by the plugin's module)."""
        self._entries[name] = entry
        return entry
