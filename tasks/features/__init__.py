"""Feature sets: how one clip × modality becomes rows of features (a registry).

A feature set is one module here that decorates its compute function with ``@register``,
declaring what the extract stage needs to run it without knowing its name:

- ``modality`` (audio | vision | text) and ``keys``: the keys of the modality's params
  section (``extract.<modality>``) that change its output; they, the media bytes, the clip
  window and (``uses_transcript``) the transcript make the per-clip cache key;
- ``compute(clip, section)``: the arrays kept for the clip (at least ``features`` and
  ``intervals``, or what its ``outputs`` read) and its warnings;
- ``outputs``: the ``.csd`` files it writes (by default one, named after the set), each with
  a description and its dimension names;
- optionally ``identity(section)``: more cache-key inputs (an external binary's identity),
  ``prepare(section)``: a check run once before any clip (the binary is installed),
  ``warm(section)``: import its libraries and load its models ahead of the first clip
  (``predict`` does it while its Prefect server starts), and
  ``counters``: names of per-clip counts it keeps (an int array ``counters`` in its arrays),
  which the stage sums into the ``.csd`` metadata and its summary.

A set with settings of its own declares ``params``, a pydantic model: its section is
``extract.<modality>.<name>`` (e.g. ``extract.vision.facemesh.max_side``), validated when
params load (tasks/params.py) and read with :func:`options`; those of its ``keys`` that are
its own are looked up there.

Adding a feature set: one new file with one ``@register(...)``, and one line in ``LINES``
(its name, modality and module), which keeps ``names()`` free of imports and lets params
validate ``extract.<modality>.feature_set`` without loading any extractor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.registry import Registry

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")

# The registration lines: name → (modality, module that registers it).
LINES: dict[str, str | tuple[str, ...]] = {
    "text": ("text", "tasks.features.text"),
    "librosa": ("audio", "tasks.features.librosa"),
    "egemaps": ("audio", "tasks.features.egemaps"),
    "facemesh": ("vision", "tasks.features.facemesh"),
    "openface": ("vision", "tasks.features.openface"),
}

Arrays = dict[str, np.ndarray]


def _features(npz: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return npz["features"], npz["intervals"]


@dataclass(frozen=True)
class Output:
    """One ``.csd`` a feature set writes: its name, how to read it from a cached entry, what
    it holds and its dimension names (``dims(section, width)``)."""

    name: str
    description: str | Callable[[Any], str]  # or a function of the params section
    dims: Callable[[Any, int], list[str]]
    read: Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray]] = _features

    def describe(self, section: Any) -> str:
        """The ``.csd`` description for these params."""
        return self.description(section) if callable(self.description) else self.description


@dataclass(frozen=True)
class FeatureSet:
    """A registered feature set (see the module docstring)."""

    name: str
    modality: str
    keys: tuple[str, ...]
    compute: Callable[[Any, Any], tuple[Arrays, list[str]]]
    outputs: tuple[Output, ...]
    uses_transcript: bool = False
    identity: Callable[[Any], dict[str, Any]] | None = None
    prepare: Callable[[Any], None] | None = None
    counters: tuple[str, ...] = ()
    about: str = ""
    params: type | None = None  # pydantic model of extract.<modality>.<name>
    warm: Callable[[Any], None] | None = None

    def key_params(self, section: Any) -> dict[str, Any]:
        """The params that change this set's output: they go into every clip's cache key
        and into the ``.csd`` metadata (a key of its own settings under its own name)."""
        shared = type(section).model_fields
        dumped = section.model_dump(mode="json", include=set(shared))
        own = options(section, self.name)
        out = {"feature_set": self.name} if "feature_set" in shared else {}
        out.update({k: dumped[k] if k in shared else getattr(own, k) for k in self.keys})
        if self.identity is not None:
            out.update(self.identity(section))
        return out


FEATURE_SETS: Registry[FeatureSet] = Registry("feature set", LINES)


def register(
    name: str,
    *,
    modality: str,
    keys: tuple[str, ...],
    description: str,
    dims: Callable[[Any, int], list[str]],
    outputs: tuple[Output, ...] = (),
    uses_transcript: bool = False,
    identity: Callable[[Any], dict[str, Any]] | None = None,
    prepare: Callable[[Any], None] | None = None,
    counters: tuple[str, ...] = (),
    params: type | None = None,
    warm: Callable[[Any], None] | None = None,
):
    """Decorator of a compute function ``(clip, section) -> (arrays, warnings)``.

    Without ``outputs`` the set writes ``<name>.csd`` from the arrays ``features`` and
    ``intervals``, described by ``description`` with dimension names ``dims``.
    """
    if modality not in MODALITIES:
        raise ValueError(f"feature set {name!r}: modality {modality!r} not in {MODALITIES}")

    def wrap(compute: Callable[[Any, Any], tuple[Arrays, list[str]]]):
        FEATURE_SETS.register(name, FeatureSet(
            name=name,
            modality=modality,
            keys=keys,
            compute=compute,
            outputs=outputs or (Output(name, description, dims),),
            uses_transcript=uses_transcript,
            identity=identity,
            prepare=prepare,
            counters=counters,
            about=description,
            params=params,
            warm=warm,
        ))
        return compute

    return wrap


def names(modality: str | None = None) -> list[str]:
    """Every registered feature set (of one modality), without importing any."""
    return sorted(n for n, line in LINES.items() if modality in (None, line[0]))


def get(name: str) -> FeatureSet:
    """The feature set registered as ``name`` (its module is imported on first use)."""
    return FEATURE_SETS.get(name)


def options(section: Any, name: str) -> Any:
    """Feature set ``name``'s own settings in a modality section (``extract.<m>.<name>``):
    the validated model params loading put there, else its defaults (None: it has none)."""
    own = getattr(section, name, None)
    if own is not None and not isinstance(own, dict):
        return own
    model = get(name).params
    return None if model is None else model.model_validate(own or {})


def section(extract: Any, modality: str) -> Any:
    """The params section of ``modality`` (``extract.<modality>``)."""
    return getattr(extract, modality)


def chosen(extract: Any, modality: str) -> FeatureSet:
    """The feature set ``extract.<modality>`` asks for (text has one: ``text``)."""
    name = getattr(section(extract, modality), "feature_set", modality)
    return get(name)


def chosen_all(extract: Any) -> dict[str, FeatureSet]:
    """``{modality: feature set}`` for every modality, as ``extract`` params choose them."""
    return {m: chosen(extract, m) for m in MODALITIES}
