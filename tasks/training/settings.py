"""``models.<name>`` sections: presets applied, then validated into typed settings.

A model's settings stack up as ``train.*`` < its preset (``models.<name>.preset``; ``auto`` =
the model's entry for ``dataset.preset``) < the keys written in ``models.<name>``. The
section holds two kinds of keys: the trainer's (:class:`TrainerSettings`, e.g. ``lr``,
``variant``) and the architecture's, the fields of the config dataclass the model registered
(``models/registry.py``). Both are validated by pydantic models that forbid unknown keys, when
params load (``tasks.params``), so ``msaflow check`` catches ``models.fasca_net.hiddn``;
training calls :func:`resolve_model` again for the typed objects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from config import presets as dataset_presets
from config.errors import ParamsError
from config.schema import Params
from models import registry

# Values of ``models.<name>.preset`` that apply no preset.
NO_PRESET = (None, "none")


class TrainerSettings(BaseModel):
    """The trainer keys of one ``models.<name>`` section over its preset and ``train.*``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    variant: Literal["unaligned", "aligned"]
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    weight_decay: float = Field(ge=0)
    warmup_epochs: int = Field(0, ge=0)
    # after the warm-up: linear decay to 0, or the same lr throughout
    schedule: Literal["linear", "constant"] = "linear"
    decay_all: bool = False  # weight decay on biases and norms too (AdamW(model.parameters()))
    select: str = "auto"  # valid metric picking the best epoch; auto: MAE / F1_weighted
    preset: str | None = None  # the model preset applied (None: none); a label only

    @model_validator(mode="after")
    def _warmup_inside_training(self) -> TrainerSettings:
        if self.warmup_epochs >= self.max_epochs:
            raise ValueError(
                f"warmup_epochs: {self.warmup_epochs} must be < max_epochs ({self.max_epochs})"
            )
        return self


def _messages(err: ValidationError, where: str, origin: dict[str, str]) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        dotted = f"{where}.{key}" if key else where
        note = origin.get(key, "")
        if e["type"] == "extra_forbidden":
            lines.append(f"{dotted}: unknown key{note}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{dotted}: {msg}{shown}{note}")
    return "; ".join(lines)


def model_section(params: Params, model_name: str) -> tuple[dict[str, Any], str | None]:
    """``models.<name>`` over its preset's keys, and the preset's name (None: no preset)."""
    where = f"models.{model_name}"
    if model_name not in params.models:
        raise ParamsError(f"{where}: no such model section in params")
    raw = params.model_params(model_name)
    choice = raw.pop("preset", dataset_presets.AUTO)
    available = registry.get(model_name).presets
    if choice == dataset_presets.AUTO:
        name = dataset_presets.model_preset(params.dataset.preset)
        name = name if name in available else None  # no entry for this dataset: none
    elif choice in NO_PRESET:
        name = None
    elif not isinstance(choice, str):
        raise ParamsError(f"{where}.preset: expected a preset name, auto or none, got {choice!r}")
    elif choice not in available:
        raise ParamsError(
            f"{where}.preset: unknown preset {choice!r}; expected auto, none or one of "
            f"{sorted(available)}"
        )
    else:
        name = choice
    if name is None:
        return raw, None
    return {**available[name], **raw}, name


def resolve_model(
    params: Params, model_name: str, *, check_variant: bool = True
) -> tuple[TrainerSettings, Any]:
    """A model's trainer settings and config: train.* < its preset < ``models.<name>``.

    ``check_variant``: the data variant must be one the cache builds (``cache.variants``).
    ParamsError names ``models.<name>.<key>`` (and the preset a bad value came from).
    """
    where = f"models.{model_name}"
    section, preset = model_section(params, model_name)
    written = set(params.model_params(model_name))
    origin = {
        k: f" (from preset {preset!r}; set {where}.{k} to override)"
        for k in section
        if k not in written
    }
    trainer_raw, arch = registry.split_params(section)
    t = params.train
    variants = params.cache.variants
    values: dict[str, Any] = {
        "variant": "unaligned" if "unaligned" in variants else variants[0],
        "lr": t.lr,
        "batch_size": t.batch_size,
        "max_epochs": t.max_epochs,
        "patience": t.patience,
        "weight_decay": t.weight_decay,
        "preset": preset,
        **trainer_raw,
    }
    for key in ("lr", "weight_decay"):  # YAML writes 1 for 1.0
        if type(values[key]) is int:
            values[key] = float(values[key])
    try:
        settings = TrainerSettings.model_validate(values)
    except ValidationError as err:
        if any(e["loc"] == () for e in err.errors()):  # the warm-up check names both keys
            origin[""] = origin.get("warmup_epochs", "") or origin.get("max_epochs", "")
        raise ParamsError(_messages(err, where, origin)) from None
    from tasks.metrics import scheme_for, selection_metric

    try:
        selection_metric(params.dataset.task, settings.select,
                         scheme_for(tuple(params.dataset.label_range)))
    except ValueError as err:
        if "select" not in origin:
            raise ParamsError(f"{where}.select: {err}") from None
        # A preset names the metric its authors selected on for that dataset's own task;
        # another task (a MOSI pickle read as classes) selects on its default.
        settings = settings.model_copy(update={"select": "auto"})
    limited = params.source_variants is not None
    if settings.variant not in variants and ("variant" in origin or limited):
        # A preset's variant that is not cached (cache.variants cut down), or any variant a
        # source that holds fewer does not have: the model runs on what is there
        # (variant_note says so).
        fallback = "unaligned" if "unaligned" in variants else variants[0]
        settings = settings.model_copy(update={"variant": fallback})
    if check_variant and settings.variant not in variants:
        raise ParamsError(
            f"{where}.variant: {settings.variant!r} is not cached "
            f"(cache.variants = {list(variants)})" + origin.get("variant", "")
        )
    config_cls = registry.get(model_name).config
    try:
        typed = registry.config_model(model_name).model_validate(arch)
    except ValidationError as err:
        raise ParamsError(_messages(err, where, origin)) from None
    try:  # the dataclass's own cross-field checks (e.g. heads divide the width)
        config = config_cls(**dict(typed))
    except ParamsError:
        raise
    except (TypeError, ValueError) as err:
        message = str(err)
        prefixed = message if message.startswith(where) else f"{where}: {message}"
        raise ParamsError(prefixed) from None
    return settings, config


def check_models(params: Params) -> list[str]:
    """Every ``models.<name>`` problem (unknown model, bad key or value), one message each."""
    problems = []
    for name in params.models:
        try:
            # whether its data variant is cached is the train stage's question
            resolve_model(params, name, check_variant=False)
        except ParamsError as err:
            problems.append(str(err))
    return problems


def variant_note(params: Params, model_name: str) -> str | None:
    """Why a model runs on another data variant than its section or preset asks, or None."""
    section, preset = model_section(params, model_name)
    wanted = section.get("variant")
    if wanted is None or wanted in params.cache.variants:
        return None
    where = (f"its preset {preset!r}" if "variant" not in params.model_params(model_name)
             else f"models.{model_name}.variant")
    return (f"models.{model_name}: {where} asks for the {wanted!r} variant, which is not "
            f"cached (cache.variants = {list(params.cache.variants)}, what "
            f"{params.dataset.source} {params.dataset.root} holds); it runs on "
            f"{resolve_model(params, model_name)[0].variant!r}")
