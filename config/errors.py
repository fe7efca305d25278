"""The errors every layer may raise (params, an artifact not in the workspace): at the bottom,
so all can import them."""

from __future__ import annotations

from pathlib import Path


class ParamsError(ValueError):
    """Params that do not match the schema; the message names the dotted key."""


class NotInWorkspace(Exception):
    """Mixed into an error about an artifact the workspace lacks (``path``): the CLI adds
    which experiment made it and the command that brings it in (runtime/experiments.py)."""

    path: Path

    def __init__(self, message: str, path: str | Path) -> None:
        super().__init__(message)
        self.path = Path(path)
