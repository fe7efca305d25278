"""Params as every stage sees them: the shared schema (config/load.py), then the registries.

A wrong type or an unknown key stops the run with a message that names the dotted key
(``extract.audio.sample_rate: ...``), never deep inside a stage. Two layers check a file:
the schema (config/schema.py: types, ranges, unknown keys of every shared section) and the
registries, for what their plugins own: the source (``dataset.source`` and its section,
e.g. ``dataset.csd``) and raw layout (tasks/sources), the audio and vision feature sets
(``extract.<modality>.feature_set`` and each set's own section, e.g.
``extract.vision.facemesh``; tasks/features) and every ``models.<name>`` section
(tasks/training/settings.py over models/registry.py). A plugin's section is replaced by its
validated model, so stages read typed values (``params.dataset.csd.words``).

Only the chosen plugins' registration modules are imported, and they import no torch,
Lightning, scikit-learn or Prefect: validating params is quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from config.errors import ParamsError
from config.load import DEFAULT_PARAMS, read_params, validate
from config.schema import Params

__all__ = ["load_params", "parse_params"]


def _plugin_section(model: type[BaseModel], raw: Any, where: str) -> tuple[Any, list[str]]:
    """``raw`` validated by a plugin's params model, or the problems, named by dotted key."""
    try:
        return model.model_validate(raw if raw is not None else {}), []
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join([where, *(str(p) for p in e["loc"])])
            if e["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key")
            else:
                got = e.get("input")
                shown = "" if isinstance(got, dict) else f" (got {got!r})"
                problems.append(f"{key}: {e['msg'].removeprefix('Value error, ')}{shown}")
        return None, problems


def _dataset(params: Params) -> tuple[Params, list[str]]:
    """The source and layout names, and the sources' own sections (``dataset.<section>``)."""
    from tasks import sources
    from tasks.sources import layouts

    problems: list[str] = []
    ds = params.dataset
    if ds.source not in sources.names():
        problems.append(f"dataset.source: {sources.SOURCES.unknown(ds.source)}")
    if ds.layout not in layouts.names():
        problems.append(f"dataset.layout: {layouts.LAYOUTS.unknown(ds.layout)}")
    else:
        problems += layouts.get(ds.layout).target_problems(ds.target, ds.task)
    extra = ds.model_extra or {}
    # whose section each extra key is (the registration modules are light); the chosen one's
    chosen = sources.get(ds.source) if ds.source in sources.names() else None
    owners = {s.section: s for s in map(sources.get, sources.names() if extra else [])
              if s.section}
    update: dict[str, Any] = {}
    for key, raw in extra.items():
        owner = owners.get(key)
        if owner is None or owner.params is None:
            problems.append(f"dataset.{key}: unknown key")
            continue
        typed, bad = _plugin_section(owner.params, raw, f"dataset.{key}")
        problems += bad
        update[key] = typed
    if chosen is not None and chosen.section and chosen.params is not None \
            and chosen.section not in update:
        update[chosen.section] = chosen.params()
    if update and not problems:
        params = params.model_copy(update={"dataset": ds.model_copy(update=update)})
    return params, problems


def _features(params: Params) -> tuple[Params, list[str]]:
    """The audio and vision feature sets, and each set's own section."""
    from tasks import features

    problems: list[str] = []
    extract = params.extract
    sections: dict[str, Any] = {}
    for modality in ("audio", "vision"):
        section = getattr(extract, modality)
        known = features.names(modality)
        if section.feature_set not in known:
            problems.append(f"extract.{modality}.feature_set: unknown {modality} feature set "
                            f"{section.feature_set!r}; expected one of {known}")
        update: dict[str, Any] = {}
        for key, raw in (section.model_extra or {}).items():
            if key not in known:
                problems.append(f"extract.{modality}.{key}: unknown key (neither a setting "
                                f"of extract.{modality} nor a {modality} feature set: {known})")
                continue
            model = features.get(key).params
            if model is None:
                problems.append(f"extract.{modality}.{key}: feature set {key!r} has no "
                                "settings of its own")
                continue
            typed, bad = _plugin_section(model, raw, f"extract.{modality}.{key}")
            problems += bad
            update[key] = typed
        chosen = section.feature_set
        if chosen in known and chosen not in update and features.get(chosen).params:
            update[chosen] = features.get(chosen).params()
        if update:
            sections[modality] = section.model_copy(update=update)
    if sections and not problems:
        params = params.model_copy(update={"extract": extract.model_copy(update=sections)})
    return params, problems


def registry_problems(params: Params) -> tuple[Params, list[str]]:
    """Params with every plugin section typed, and what the registries say is wrong with
    the names and sections they own: ``key: problem`` lines."""
    from tasks.training.settings import check_models

    params, problems = _dataset(params)
    params, more = _features(params)
    problems += more + check_models(params)
    if params.robustness.reference not in params.models:
        problems.append(f"robustness.reference: {params.robustness.reference!r} has no section "
                        f"under models; expected one of {sorted(params.models)}")
    return params, problems


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Resolve presets and validate a params mapping; raise ParamsError naming every bad key."""
    params, problems = registry_problems(validate(raw, source))
    if problems:
        raise ParamsError("\n".join([f"{source}: invalid params", *(f"  {p}" for p in problems)]))
    return follow_source_variants(params, source)


def follow_source_variants(params: Params, source: str = "params") -> Params:
    """Keep ``cache.variants`` to the variants the dataset's source holds (an MMSA pickle
    holds one; MMSA's release folder both). A model whose variant is not held runs on the one
    that is, with a note (tasks/training/settings.py)."""
    from tasks import sources

    hook = sources.of(params).variants
    held = hook(params) if hook is not None else None
    if held is None:
        return params
    kept = tuple(v for v in params.cache.variants if v in held)
    if not kept:
        raise ParamsError(
            f"{source}: cache.variants = {list(params.cache.variants)}, but dataset.root "
            f"{params.dataset.root} holds the {' and '.join(held)} variant only; set "
            f"cache.variants to [{', '.join(held)}]"
        )
    if kept != tuple(params.cache.variants):
        params = params.model_copy(
            update={"cache": params.cache.model_copy(update={"variants": kept})})
    else:
        params = params.model_copy()
    params._held_variants = tuple(held)
    return params


def load_params(
    path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None
) -> Params:
    """Read, override (dotted keys) and validate a params file."""
    return parse_params(read_params(path, overrides), str(path))
