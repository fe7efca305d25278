"""The schema of params.yaml: one typed, frozen section per stage plus the shared base.

Every stage reads its knobs from these classes; ``tasks.params.load_params`` builds them.
This module knows no plugin: names that registries own (a source, a raw layout, a feature
set, a model's keys) are plain strings here and are checked against their registry when
params load (``tasks.params``), so a plugin module may import this one for its types.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from config import presets

# Every section: unknown keys refused, frozen once loaded, and no NaN or infinity in a
# float anywhere (`-S train.lr=inf` is an error naming the key, not a crash epochs later).
_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)
# A seed: numpy and torch take 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class _Section(BaseModel):
    model_config = _CONFIG


class PluginParams(BaseModel):
    """The base of a plugin's own params model (a source's ``dataset.<section>``, a feature
    set's ``extract.<modality>.<name>``): the same rules as every shared section."""

    model_config = _CONFIG



class _PluginSections(_Section):
    """A section whose other keys are plugin sections (a source's, a feature set's), each
    validated by its plugin's own params model when params load (tasks/params.py)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=False, allow_inf_nan=False)


class DatasetParams(_PluginSections):
    """Which dataset and how it enters; ``dataset.<section>`` of a source holds its params
    (``csd``: tasks/sources/csd, ``pkl``: tasks/sources/mmsa_pkl)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    # The preset (config/presets.py) that filled this section's `auto` keys; params.yaml
    # may say auto (= the preset named like dataset.name, else generic); resolved here.
    preset: str = presets.GENERIC
    # A registered source (tasks/sources: raw, csd, mmsa_pkl) and, for raw, its layout
    # (mmsa, meld, iemocap, folder); checked against the registry when params load.
    source: str = "raw"
    root: Path
    layout: str = "mmsa"
    # Which labels become label_class, among the layout's targets (meld emotion |
    # sentiment, iemocap 4class | 6class); auto = the layout's default.
    target: str = "auto"
    task: Literal["regression", "classification"] = "regression"
    label_range: tuple[float, float] = (-3.0, 3.0)

    @field_validator("label_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] >= v[1]:
            raise ValueError(f"expected [low, high] with low < high, got {list(v)}")
        return v

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in presets.PRESETS:
            raise ValueError(f"unknown preset {v!r}; expected one of {presets.known()}")
        return v



class DemoNoise(_Section):
    text: float = Field(ge=0)
    audio: float = Field(ge=0)
    vision: float = Field(ge=0)


class DemoParams(_Section):
    n_clips: int = Field(ge=6)
    n_speakers: int = Field(ge=1, le=8)
    split: tuple[float, float, float]
    clips_per_video: int = Field(ge=1)
    fps: int = Field(ge=1, le=60)
    size: int = Field(ge=32, le=1024)
    noise: DemoNoise
    neutral_text: float = Field(ge=0, le=1)
    hidden_face: float = Field(ge=0, le=1)

    @field_validator("split")
    @classmethod
    def _sums_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x <= 0 for x in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"expected three positive fractions summing to 1, got {list(v)}")
        return v


class IngestParams(_Section):
    on_duplicate: Literal["drop", "fail"] = "drop"
    fail_fast: bool = False
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r}") from None
        return v


class AudioParams(_PluginSections):
    """``extract.audio``: the feature set and what every audio set shares; a set's own
    settings under its name."""

    feature_set: str = "librosa"  # a registered audio feature set (tasks/features)
    sample_rate: int = Field(ge=4000, le=96000)
    hop_seconds: float = Field(gt=0, le=1)


class VisionParams(_PluginSections):
    """``extract.vision``: the feature set and the frame rate every vision set samples at;
    a set's own settings under its name (``facemesh.max_side``, ``openface.bin``)."""

    feature_set: str = "facemesh"  # a registered vision feature set (tasks/features)
    fps: float = Field(gt=0, le=60)  # rows per second, every feature set


class TextParams(_Section):
    tokenizer: str
    encoder: str
    max_tokens: int = Field(ge=4, le=512)
    # Word times: forced alignment of the transcript on the speech (PocketSphinx, US English;
    # a clip that fails falls back to spread, with a warning) or spread by word length.
    timing: Literal["forced", "spread"] = "forced"
    # Speech recognition for clips without a transcript (none: such a clip has no text).
    asr: Literal["none", "pocketsphinx", "whisper"] = "none"
    # whisper: a Hugging Face Whisper checkpoint, a local folder or a name in the local cache
    asr_model: str = ""
    # ISO 639-1 code of the transcripts' language; forced alignment and pocketsphinx are
    # English only.
    language: str = Field("en", pattern=r"^[a-z]{2,3}$")

    @model_validator(mode="after")
    def _engines_fit_the_language(self) -> TextParams:
        if self.language != "en" and self.timing == "forced":
            raise ValueError(
                f"timing: forced aligns with PocketSphinx's US English model, not language "
                f"{self.language!r} (an English alignment of other speech would be wrong): "
                "set extract.text.timing: spread"
            )
        if self.language != "en" and self.asr == "pocketsphinx":
            raise ValueError(
                f"asr: pocketsphinx recognises US English only, not {self.language!r}: set "
                "extract.text.asr: whisper with a multilingual checkpoint, or none"
            )
        if self.asr == "whisper" and not self.asr_model:
            raise ValueError(
                "asr: whisper needs extract.text.asr_model, a Whisper checkpoint: a local "
                "folder (save_pretrained) or a Hugging Face name in the local cache"
            )
        return self


class DaskParams(_Section):
    """``extract.runner: dask``: where the clips go (docs/scaling.md)."""

    # "" = a local cluster of extract.workers processes; else a running scheduler's address
    address: str = Field("", pattern=r"^$|^[a-z]+://\S+$")


class ExtractParams(_Section):
    workers: int = Field(ge=1)
    # threads: extract.workers threads in the stage's process; dask: Dask workers (a local
    # cluster of extract.workers processes, or the scheduler at extract.dask.address)
    runner: Literal["threads", "dask"] = "threads"
    dask: DaskParams = DaskParams()
    fail_fast: bool
    max_failed_fraction: float = Field(ge=0, le=1)
    audio: AudioParams
    vision: VisionParams
    text: TextParams


class SeqLen(_Section):
    words: int = Field(ge=1)
    audio: int = Field(ge=1)
    vision: int = Field(ge=1)


class CacheParams(_Section):
    variants: tuple[Literal["unaligned", "aligned"], ...]
    seq_len: SeqLen
    normalize: bool

    @field_validator("variants")
    @classmethod
    def _non_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"expected a non-empty list of distinct variants, got {list(v)}")
        return v


class TrainParams(_Section):
    models: tuple[str, ...]
    seeds: tuple[Seed, ...]
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    # Scale (docs/scaling.md): processes per node, nodes, Lightning strategy, precision.
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp"] = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    num_workers: int = Field(ge=0)
    # Cross-entropy class weights (classification): none | balanced (inverse class frequency
    # of the train split, mean 1; tasks/train.py) | one non-negative weight per class.
    class_weights: str | tuple[float, ...] = "none"

    @model_validator(mode="after")
    def _scale(self) -> TrainParams:
        processes = self.devices * self.num_nodes
        if self.strategy == "ddp" and processes == 1:
            raise ValueError(
                "strategy: 'ddp' needs more than one process (train.devices × "
                "train.num_nodes is 1); set train.devices: 2 or more, or strategy: auto")
        if self.strategy == "auto" and processes > 1:
            raise ValueError(
                f"strategy: train.devices × train.num_nodes = {processes} processes need "
                "strategy: ddp (Lightning's DistributedDataParallel)")
        return self

    @field_validator("models", "seeds")
    @classmethod
    def _non_empty(cls, v: tuple) -> tuple:
        if not v:
            raise ValueError("expected a non-empty list")
        return v

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights(cls, v: Any) -> str | tuple[float, ...]:
        if v is None or v == "none":
            return "none"
        if v == "balanced":
            return v
        numeric = isinstance(v, list | tuple) and all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in v
        )
        if not numeric or not v or not all(math.isfinite(w) and w >= 0 for w in v) or not any(v):
            raise ValueError(
                "expected none | balanced | a list of non-negative weights, one per class "
                f"(not all 0), got {v!r}"
            )
        return tuple(float(w) for w in v)


class EvaluateParams(_Section):
    splits: tuple[Literal["train", "valid", "test"], ...]


class RobustnessParams(_Section):
    """The robustness stage: which splits, missing rates, noise levels, draws and seed."""

    splits: tuple[Literal["train", "valid", "test"], ...]
    rates: tuple[float, ...]  # missing rates: each token / row dropped with this probability
    levels: tuple[float, ...]  # noise std, in units of each feature's train std
    draws: int = Field(ge=1)  # random draws averaged per rate / level
    seed: Seed
    reference: str = "late_fusion"  # effective robustness is measured against this model

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 <= r < 1 for r in v) or list(v) != sorted(set(v)):
            raise ValueError(f"expected increasing distinct rates in [0, 1), got {list(v)}")
        return v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(x < 0 for x in v) or list(v) != sorted(set(v)):
            raise ValueError(f"expected increasing distinct levels >= 0, got {list(v)}")
        return v

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"expected a non-empty list of distinct splits, got {list(v)}")
        return v


class PredictParams(_Section):
    """`msaflow predict` (not a stage): what it does with a video missing a modality."""

    # a video with no audio stream, no face in any frame, or no transcript (none given and
    # none recognised) is scored with that modality absent, as the robustness stage's
    # "absent" conditions feed it, and its JSON names it; false: such a video is an error
    allow_absent: bool = True


class Params(_Section):
    seed: Seed
    dataset: DatasetParams
    demo: DemoParams
    ingest: IngestParams
    extract: ExtractParams
    cache: CacheParams
    train: TrainParams
    models: dict[str, dict[str, Any]]
    evaluate: EvaluateParams
    robustness: RobustnessParams
    predict: PredictParams = PredictParams()
    # The data variants the dataset's source holds when it holds only some (an MMSA
    # pickle): set when params load (tasks/params.py); None = whatever cache.variants asks.
    _held_variants: tuple[str, ...] | None = PrivateAttr(None)

    @property
    def source_variants(self) -> tuple[str, ...] | None:
        """The variants the dataset's source holds, when it holds only some (else None)."""
        return self._held_variants

    @model_validator(mode="after")
    def _models_configured(self) -> Params:
        missing = [m for m in self.train.models if m not in self.models]
        if missing:
            raise ValueError(f"train.models names {missing} but models has no section for them")
        return self

    @model_validator(mode="after")
    def _class_weights_need_classes(self) -> Params:
        if self.train.class_weights != "none" and self.dataset.task != "classification":
            raise ValueError(
                f"train.class_weights: {self.train.class_weights!r} weights the classes of a "
                f"classification dataset, but dataset.task is {self.dataset.task!r}; "
                "expected none"
            )
        return self

    def model_params(self, name: str) -> dict[str, Any]:
        """The raw hyper-parameter dict of one model (validated by its config class)."""
        return dict(self.models[name])


