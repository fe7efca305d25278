"""``-S key=value`` overrides for one run, spelled as DVC spells them (`dvc exp run -S`).

The CLI (``msaflow <stage> -S ...``), ``msaflow run -S ...`` and a Prefect flow
run's ``overrides`` parameter all end in the same ``{dotted key: value}`` mapping that
``load_params`` applies on top of params.yaml before validating, so a run started from any
of them sees the same params. Values are YAML, as in DVC: ``3``, ``true``, ``[-1, 1]``,
``null``; anything else is a string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from config.errors import ParamsError


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["dataset.name=mosi", "cache.seq_len.audio=375"]`` → ``{key: value}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ParamsError(f"-S {item!r}: expected KEY=VALUE with a dotted key, "
                              "e.g. -S dataset.name=mosi")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ParamsError(f"-S {item!r}: the value is not valid YAML ({err})") from None
        out[key] = value
    return out


def describe(overrides: dict[str, Any] | None) -> str:
    """``-S a=1 -S b=x`` (for logs), or "" when there is none."""
    return " ".join(f"-S {k}={v}" for k, v in (overrides or {}).items())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``), as -S spells
    them."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
