"""Name → model class, so params name a model and checkpoints rebuild it.

Adding a model: one file that decorates its class with ``@register(name, ConfigDataclass)``,
and one line in ``_MODULES`` naming that file (imported only when the model is used).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from msaflow.errors import ParamsError

if TYPE_CHECKING:  # the model modules import torch; this index stays light
    from models.base import DataSpec, MSAModel

# Keys of a ``models.<name>`` params section that the trainer consumes, not the architecture.
TRAIN_KEYS = (
    "variant",
    "lr",
    "batch_size",
    "max_epochs",
    "patience",
    "weight_decay",
    "warmup_epochs",
    "schedule",
    "decay_all",
    "select",
    "preset",
)

# Model name → module that defines it (imported lazily: a heavy model costs nothing unused).
_MODULES = {
    "unimodal_text": "models.baselines",
    "unimodal_audio": "models.baselines",
    "unimodal_vision": "models.baselines",
    "late_fusion": "models.baselines",
    "dashfusion": "models.dashfusion",
    "fasca_net": "models.fasca_net",
}

_REGISTRY: dict[str, tuple[type[MSAModel], type]] = {}


def register(name: str, config_cls: type):
    """Class decorator: make a model buildable by name with its config dataclass."""

    def wrap(cls: type[MSAModel]) -> type[MSAModel]:
        cls.name = name
        _REGISTRY[name] = (cls, config_cls)
        return cls

    return wrap


def available() -> list[str]:
    """Every model name params may use."""
    return sorted(_MODULES)


def lookup(name: str) -> tuple[type[MSAModel], type]:
    """The (model class, config class) registered under ``name``."""
    if name not in _MODULES:
        raise ParamsError(f"models.{name}: unknown model {name!r}; available: {available()}")
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]


def split_params(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a ``models.<name>`` section into (trainer keys, architecture keys)."""
    train = {k: v for k, v in raw.items() if k in TRAIN_KEYS}
    arch = {k: v for k, v in raw.items() if k not in TRAIN_KEYS}
    return train, arch


@functools.cache
def _typed(config_cls: type) -> type[BaseModel]:
    hints = typing.get_type_hints(config_cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name]
        if kind is tuple or typing.get_origin(kind) is tuple:
            kind = Annotated[kind, Field(strict=False)]  # YAML and checkpoints give lists
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        fields[f.name] = (kind, default)
    return create_model(
        f"{config_cls.__name__}Params", __config__=ConfigDict(extra="forbid", strict=True),
        **fields,
    )


def config_model(name: str) -> type[BaseModel]:
    """The pydantic model of ``name``'s architecture keys: its config dataclass's fields,
    their types checked strictly, unknown keys refused."""
    _, config_cls = lookup(name)
    return _typed(config_cls)


def build_config(name: str, arch: dict[str, Any]) -> Any:
    """Validate architecture params into the model's config dataclass (ParamsError names
    ``models.<name>.<key>``); the dataclass's own checks run on construction."""
    _, config_cls = lookup(name)
    try:
        typed = config_model(name).model_validate(arch)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ParamsError(f"models.{name}.{key}: {what} (got {first.get('input')!r})") from None
    return config_cls(**dict(typed))


def build(name: str, spec: DataSpec, config: Any) -> MSAModel:
    """Instantiate a registered model for the given data."""
    if isinstance(config, dict):
        config = build_config(name, config)
    cls, _ = lookup(name)
    return cls(spec, config)
