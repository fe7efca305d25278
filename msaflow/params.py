"""params.yaml: read, overridden, presets resolved, then validated on load.

Every stage reads its knobs through ``load_params``. A wrong type or an unknown key stops the
run with a message that names the dotted key (``extract.audio.sample_rate: ...``), never
deep inside a stage. Two layers check a file: the schema (msaflow/schema.py: types, ranges,
unknown keys of every section) and the registries, for the names they own: the source and
raw layout (tasks/sources), the audio and vision feature sets (tasks/features) and every
``models.<name>`` section (msaflow/model_params.py over models/registry.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from msaflow import presets
from msaflow.errors import ParamsError
from msaflow.schema import Params

DEFAULT_PARAMS = Path("params.yaml")

__all__ = [
    "DEFAULT_PARAMS",
    "ParamsError",
    "load_params",
    "parse_params",
    "resolve_presets",
    "set_dotted",
]


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            # a section's own check names its key first ("timing: ..."): spell it dotted
            head, sep, rest = msg.partition(": ")
            if sep and head.isidentifier() and isinstance(got, dict):
                key, msg = f"{key}.{head}", rest
            lines.append(f"  {key}: {msg}{got_s}")
    return "\n".join(lines)


def resolve_presets(raw: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """A copy of ``raw`` with every ``auto`` of a preset-covered key set by the dataset preset.

    The preset is ``dataset.preset`` (``auto``: the one named like ``dataset.name``, else
    ``generic``); its resolved name is written back there. An ``auto`` the preset has no
    value for is removed, so the key's schema default applies. Other values are kept.
    """
    dataset = raw.get("dataset")
    if not isinstance(dataset, dict):
        return raw  # validation names the missing section
    raw = copy.deepcopy(raw)
    dataset = raw["dataset"]
    choice = dataset.get("preset", presets.AUTO)
    try:
        name = presets.preset_name(dataset.get("name"), choice)
    except KeyError:
        raise ParamsError(
            f"{source}: dataset.preset: unknown preset {choice!r}; expected auto or one of "
            f"{presets.known()}"
        ) from None
    dataset["preset"] = name
    values = presets.PRESETS[name].values
    for key in presets.COVERED:
        *parents, leaf = key.split(".")
        node: Any = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get(leaf) != presets.AUTO:
            continue
        if key in values:
            node[leaf] = copy.deepcopy(values[key])
        else:
            del node[leaf]
    return raw


def registry_problems(params: Params) -> list[str]:
    """What the registries say of the names params use: ``key: problem`` lines."""
    from msaflow.model_params import check_models
    from tasks import features, sources

    problems = []
    ds = params.dataset
    if ds.source not in sources.names():
        problems.append(f"dataset.source: unknown source {ds.source!r}; expected one of "
                        f"{sources.names()}")
    if ds.layout not in sources.layout_names():
        problems.append(f"dataset.layout: unknown layout {ds.layout!r}; expected one of "
                        f"{sources.layout_names()}")
    else:
        problems += sources.layout_of(ds.layout).target_problems(ds.target, ds.task)
    for modality in ("audio", "vision"):
        chosen = getattr(params.extract, modality).feature_set
        known = features.names(modality)
        if chosen not in known:
            problems.append(f"extract.{modality}.feature_set: unknown {modality} feature set "
                            f"{chosen!r}; expected one of {known}")
    problems += check_models(params)
    if params.robustness.reference not in params.models:
        problems.append(f"robustness.reference: {params.robustness.reference!r} has no section "
                        f"under models; expected one of {sorted(params.models)}")
    return problems


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Resolve presets and validate a params mapping; raise ParamsError naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    raw = resolve_presets(raw, source)
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None
    problems = registry_problems(params)
    if problems:
        raise ParamsError("\n".join([f"{source}: invalid params", *(f"  {p}" for p in problems)]))
    return follow_source_variants(params, source)


def follow_source_variants(params: Params, source: str = "params") -> Params:
    """Keep ``cache.variants`` to the variants the dataset's source holds (an MMSA pickle
    holds one; MMSA's release folder both). A model whose variant is not held runs on the one
    that is, with a note (msaflow/model_params.py)."""
    from tasks import sources

    hook = sources.get(params.dataset.source).variants
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
    return params


def load_params(
    path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None
) -> Params:
    """Read, override (dotted keys) and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return parse_params(raw, str(path))


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating no new sections silently."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise ParamsError(f"override {key}: {'.'.join(parts[: i + 1])} is not a section")
        node = node[part]
    node[parts[-1]] = value
