"""Sources and raw layouts: how a dataset enters the DAG (two registries).

A **source** (``dataset.source``) says at which layer a dataset enters and registers the
hooks the stages call, so no stage names one:

- ``manifest(params, paths)``: the ``ingest`` stage (manifest + ``ingest_errors.csv``);
- ``extract(params, paths)``: the ``extract`` stage for a source that brings its own
  features (official ``.csd`` sequences, a pickle of tensors); None = the media extractors;
- ``cache(params, paths)``: the ``cache`` stage for a source that brings tensors;
  None = the ``.csd`` files → HDF5 path;
- ``streams(params)``: the ``.csd`` names of the audio and vision streams.

A **raw layout** (``dataset.layout``, for ``source: raw``) parses one dataset's release into
candidate manifest rows; the checks every layout shares run after it (tasks/sources/raw.py).
It declares its ``dataset.target`` choices and its class names.

Adding one: a new file here with one ``register_source(...)`` / ``@layout(...)``, and one
line in ``_SOURCES`` / ``_LAYOUTS`` (so params validate the name without importing it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tasks.contracts import Issue

_SOURCES: dict[str, str] = {
    "raw": "tasks.sources.raw",
    "csd": "tasks.sources.csd",
    "mmsa_pkl": "tasks.sources.mmsa_pkl",
}
_LAYOUTS: dict[str, str] = {
    "mmsa": "tasks.sources.mmsa",
    "meld": "tasks.sources.meld",
    "iemocap": "tasks.sources.iemocap",
    "folder": "tasks.sources.folder",
}

Hook = Callable[[Any, Any], dict[str, Any]]  # (params, paths) -> stage summary


@dataclass(frozen=True)
class Source:
    """A registered source (see the module docstring)."""

    name: str
    about: str
    manifest: Hook
    streams: Callable[[Any], dict[str, str]]
    extract: Hook | None = None
    cache: Hook | None = None
    # The data variants the source holds (None: whatever `cache.variants` asks, built from
    # the features); params resolution keeps cache.variants to these.
    variants: Callable[[Any], tuple[str, ...] | None] | None = None

    @property
    def media(self) -> bool:
        """True when the features come from media through the extractors (raw sources)."""
        return self.extract is None


@dataclass(frozen=True)
class Layout:
    """A registered raw layout: ``read(params)`` → (candidate rows, problems only it sees).

    ``targets``: the ``dataset.target`` values it takes besides ``auto``; ``scored``: the
    targets (``auto`` included) whose clips carry a regression label; ``classes(params)``:
    its fixed class names (None: MMSA polarity from the labels).
    """

    name: str
    about: str
    read: Callable[[Any], tuple[pd.DataFrame, list[Issue]]]
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


_REGISTRY: dict[str, Source] = {}
_LAYOUT_REGISTRY: dict[str, Layout] = {}


def register_source(source: Source) -> Source:
    """Make ``source`` available as ``dataset.source: <name>``."""
    _REGISTRY[source.name] = source
    return source


def layout(
    name: str,
    *,
    about: str,
    targets: tuple[str, ...] = (),
    scored: tuple[str, ...] = ("auto",),
    classes: Callable[[Any], tuple[str, ...]] | None = None,
):
    """Decorator of a layout's reader: make it available as ``dataset.layout: <name>``."""

    def wrap(read: Callable[[Any], tuple[pd.DataFrame, list[Issue]]]):
        _LAYOUT_REGISTRY[name] = Layout(name, about, read, targets, scored, classes)
        return read

    return wrap


def names() -> list[str]:
    """Every registered source, without importing any."""
    return sorted(_SOURCES)


def layout_names() -> list[str]:
    """Every registered raw layout, without importing any."""
    return sorted(_LAYOUTS)


def get(name: str) -> Source:
    """The source registered as ``name`` (its module is imported on first use)."""
    if name not in _SOURCES:
        raise KeyError(f"unknown source {name!r}; expected one of {names()}")
    if name not in _REGISTRY:
        importlib.import_module(_SOURCES[name])
    return _REGISTRY[name]


def layout_of(name: str) -> Layout:
    """The raw layout registered as ``name``."""
    if name not in _LAYOUTS:
        raise KeyError(f"unknown layout {name!r}; expected one of {layout_names()}")
    if name not in _LAYOUT_REGISTRY:
        importlib.import_module(_LAYOUTS[name])
    return _LAYOUT_REGISTRY[name]


def of(params: Any) -> Source:
    """The source ``params`` name (``dataset.source``)."""
    return get(params.dataset.source)


def streams(params: Any) -> dict[str, str]:
    """Feature-set names (= ``.csd`` stems) of the audio and vision streams of ``params``."""
    return of(params).streams(params)


def classes(params: Any) -> tuple[str, ...] | None:
    """The fixed class names of the dataset's raw layout (None: MMSA polarity)."""
    found = layout_of(params.dataset.layout)
    return None if found.classes is None else found.classes(params)
