"""params.yaml read and checked against the shared schema: the bottom of params loading.

``read_params`` reads the file and applies ``-S`` overrides; ``validate`` resolves the dataset
preset's ``auto`` values (config/presets.py) and checks every shared section
(config/schema.py: types, ranges, unknown keys), naming the dotted key of each problem. The
sections a plugin owns (a source's, a feature set's, a model's) are checked by its registry
on top of this (tasks/params.py). Nothing here imports a package heavier than pydantic.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config import presets
from config.errors import ParamsError
from config.schema import Params

DEFAULT_PARAMS = Path("params.yaml")


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


def read_params(path: str | Path = DEFAULT_PARAMS,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The params file as a mapping, with ``overrides`` (dotted keys) set on it."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return raw


def validate(raw: Any, source: str = "params") -> Params:
    """Presets resolved, then the shared schema: typed, frozen params (ParamsError names
    every bad key)."""
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    raw = resolve_presets(raw, source)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating no new sections silently."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise ParamsError(f"override {key}: {'.'.join(parts[: i + 1])} is not a section")
        node = node[part]
    node[parts[-1]] = value

