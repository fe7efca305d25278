"""Sources: how a dataset enters the DAG (``dataset.source``), a registry.

A **source** says at which layer a dataset enters and registers the hooks the stages call,
so no stage names one. Hooks are ``"module:function"`` names, imported when the stage runs,
so registering (and validating params) loads no stage code:

- ``manifest``: ``(params, paths) → summary``, the ``ingest`` stage (manifest +
  ``ingest_errors.csv``);
- ``extract``: the ``extract`` stage for a source that brings its own features (official
  ``.csd`` sequences, a pickle of tensors); None = the media extractors;
- ``cache``: the ``cache`` stage for a source that brings tensors; None = the ``.csd`` files
  → HDF5 path;
- ``streams(params)``: the ``.csd`` names of the audio and vision streams;
- ``variants(params)``: the data variants it holds (None: whatever ``cache.variants`` asks);
- ``section`` and ``params``: its own params section (``dataset.<section>``) and the
  pydantic model that validates it (tasks/params.py does, when params load).

Raw media come in through the ``raw`` source, whose release formats are the raw layouts
(tasks/sources/layouts/, a registry of their own). Adding a source: one module or package
here that calls ``register(Source(...))``, and one line in ``LINES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.registry import Registry

LINES: dict[str, str] = {
    "raw": "tasks.sources.raw",
    "csd": "tasks.sources.csd",
    "mmsa_pkl": "tasks.sources.mmsa_pkl",
}

Hook = Callable[[Any, Any], dict[str, Any]]  # (params, paths) -> stage summary


@dataclass(frozen=True)
class Source:
    """A registered source (see the module docstring)."""

    name: str
    about: str
    manifest: str  # "module:function"
    streams: Callable[[Any], dict[str, str]]
    extract: str | None = None
    cache: str | None = None
    variants: Callable[[Any], tuple[str, ...] | None] | None = None
    section: str | None = None  # dataset.<section> holds its params
    params: type | None = None  # the pydantic model of that section

    @property
    def media(self) -> bool:
        """True when the features come from media through the extractors (raw sources)."""
        return self.extract is None

    def hook(self, step: str) -> Hook | None:
        """The function of ``step`` (manifest, extract, cache), imported now; None if the
        source leaves that step to the shared path."""
        ref = getattr(self, step)
        if ref is None:
            return None
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)


SOURCES: Registry[Source] = Registry("source", LINES)


def names() -> list[str]:
    """Every registered source, without importing any."""
    return SOURCES.names()


def get(name: str) -> Source:
    """The source registered as ``name`` (its module is imported on first use)."""
    return SOURCES.get(name)


def register(source: Source) -> Source:
    """Make ``source`` available as ``dataset.source: <name>``."""
    return SOURCES.register(source.name, source)


def of(params: Any) -> Source:
    """The source ``params`` name (``dataset.source``)."""
    return get(params.dataset.source)


def streams(params: Any) -> dict[str, str]:
    """Feature-set names (= ``.csd`` stems) of the audio and vision streams of ``params``."""
    return of(params).streams(params)


def classes(params: Any) -> tuple[str, ...] | None:
    """The fixed class names of the dataset's raw layout (None: MMSA polarity)."""
    from tasks.sources import layouts

    found = layouts.get(params.dataset.layout)
    return None if found.classes is None else found.classes(params)
