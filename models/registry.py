"""Name → model, so params name a model and checkpoints rebuild it.

A model registers a :class:`ModelEntry` from its package's ``__init__``, which imports no
torch: its config dataclass (the architecture keys of ``models.<name>``, checked when params
load), its presets per dataset preset, and where its ``nn.Module`` class lives (imported
only to build one). Adding a model: a package ``models/<name>/`` whose ``__init__`` calls
``register(ModelEntry(...))``, and one line in ``LINES`` naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from config.errors import ParamsError
from config.registry import Registry

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

# The registration lines: model name → the package that registers it.
LINES: dict[str, str] = {
    "unimodal_text": "models.baselines",
    "unimodal_audio": "models.baselines",
    "unimodal_vision": "models.baselines",
    "late_fusion": "models.baselines",
    "dashfusion": "models.dashfusion",
    "fasca_net": "models.fasca_net",
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its config, presets and (lazily) its class."""

    name: str
    config: type  # dataclass of the architecture keys
    model: str  # "module:Class" of the nn.Module (imported by model_class())
    # dataset preset name → a models.<name> section (trainer and architecture keys)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def model_class(self) -> type[MSAModel]:
        """The ``MSAModel`` subclass (imports torch)."""
        module, _, attr = self.model.partition(":")
        return getattr(importlib.import_module(module), attr)


MODELS: Registry[ModelEntry] = Registry("model", LINES)


def names() -> list[str]:
    """Every model name params may use."""
    return MODELS.names()


def get(name: str) -> ModelEntry:
    """The model registered as ``name`` (ParamsError naming ``models.<name>`` if unknown)."""
    try:
        return MODELS.get(name)
    except KeyError:
        raise ParamsError(f"models.{name}: {MODELS.unknown(name)}") from None


def register(entry: ModelEntry) -> ModelEntry:
    """Make ``entry`` buildable by its name (called from the model package's __init__)."""
    return MODELS.register(entry.name, entry)


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
        f"{config_cls.__name__}Params",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
        **fields,
    )


def config_model(name: str) -> type[BaseModel]:
    """The pydantic model of ``name``'s architecture keys: its config dataclass's fields,
    their types checked strictly, unknown keys refused."""
    return _typed(get(name).config)


def build_config(name: str, arch: dict[str, Any]) -> Any:
    """Validate architecture params into the model's config dataclass (ParamsError names
    ``models.<name>.<key>``); the dataclass's own checks run on construction."""
    try:
        typed = config_model(name).model_validate(arch)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ParamsError(f"models.{name}.{key}: {what} (got {first.get('input')!r})") from None
    return get(name).config(**dict(typed))


def build(name: str, spec: DataSpec, config: Any) -> MSAModel:
    """Instantiate a registered model for the given data."""
    if isinstance(config, dict):
        config = build_config(name, config)
    return get(name).model_class()(spec, config)
