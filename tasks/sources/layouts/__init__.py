"""Raw layouts: how one dataset's release of media files becomes manifest rows (a registry).

A layout (``dataset.layout``, for ``dataset.source: raw``) parses a release into candidate
manifest rows plus the problems only it can see; the checks every layout shares run after
it (tasks/sources/raw.py). It declares its ``dataset.target`` choices and its class names.
Adding one: a module here whose reader is decorated with ``@register(...)``, and one line in
``LINES`` (so params validate the name without importing it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.registry import Registry

LINES: dict[str, str] = {
    "mmsa": "tasks.sources.layouts.mmsa",
    "meld": "tasks.sources.layouts.meld",
    "iemocap": "tasks.sources.layouts.iemocap",
    "folder": "tasks.sources.layouts.folder",
}


@dataclass(frozen=True)
class Layout:
    """A registered raw layout: ``read(params)`` → (candidate rows, problems only it sees).

    ``targets``: the ``dataset.target`` values it takes besides ``auto``; ``scored``: the
    targets (``auto`` included) whose clips carry a regression label; ``classes(params)``:
    its fixed class names (None: MMSA polarity from the labels).
    """

    name: str
    about: str
    read: Callable[[Any], Any]  # (params) -> (DataFrame, list[Issue])
    targets: tuple[str, ...] = ()
    scored: tuple[str, ...] = ("auto",)
    classes: Callable[[Any], tuple[str, ...]] | None = None

    def target_problems(self, target: str, task: str) -> list[str]:
        """``dataset.target`` / ``dataset.task`` problems for this layout, as params lines."""
        if target != "auto" and target not in self.targets:
            choices = "".join(f" | {c}" for c in self.targets)
            return [f"dataset.target: {target!r} does not apply to layout {self.name!r} "
                    f"(expected auto{choices})"]
        if task == "regression" and target not in self.scored:
            return [f"dataset.task: layout {self.name!r} target {target!r} has only class "
                    "labels: set dataset.task: classification"]
        return []


LAYOUTS: Registry[Layout] = Registry("layout", LINES)


def names() -> list[str]:
    """Every registered raw layout, without importing any."""
    return LAYOUTS.names()


def get(name: str) -> Layout:
    """The raw layout registered as ``name`` (its module is imported on first use)."""
    return LAYOUTS.get(name)


def register(
    name: str,
    *,
    about: str,
    targets: tuple[str, ...] = (),
    scored: tuple[str, ...] = ("auto",),
    classes: Callable[[Any], tuple[str, ...]] | None = None,
):
    """Decorator of a layout's reader: make it available as ``dataset.layout: <name>``."""

    def wrap(read: Callable[[Any], Any]):
        LAYOUTS.register(name, Layout(name, about, read, targets, scored, classes))
        return read

    return wrap
