"""Name → model class, so params name a model and checkpoints rebuild it."""

from __future__ import annotations

import importlib
from typing import Any

from models.base import TRAIN_KEYS, DataSpec, MSAModel, config_from_params

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
        from msaflow.params import ParamsError

        raise ParamsError(f"unknown model {name!r}; available: {available()}")
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]


def split_params(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a ``models.<name>`` section into (trainer keys, architecture keys)."""
    train = {k: v for k, v in raw.items() if k in TRAIN_KEYS}
    arch = {k: v for k, v in raw.items() if k not in TRAIN_KEYS}
    return train, arch


def build_config(name: str, arch: dict[str, Any]) -> Any:
    """Validate architecture params into the model's config dataclass."""
    _, config_cls = lookup(name)
    return config_from_params(config_cls, arch, f"models.{name}")


def build(name: str, spec: DataSpec, config: Any) -> MSAModel:
    """Instantiate a registered model for the given data."""
    cls, config_cls = lookup(name)
    if isinstance(config, dict):
        config = config_from_params(config_cls, config, f"models.{name}")
    return cls(spec, config)
