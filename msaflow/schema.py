"""The schema of params.yaml: one typed, frozen section per stage plus the shared base.

Every stage reads its knobs from these classes; ``msaflow.params.load_params`` builds them.
This module knows no plugin: names that registries own (a source, a raw layout, a feature
set, a model's keys) are plain strings here and are checked against their registry when
params load (``msaflow.params``), so a plugin module may import this one for its types.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from msaflow import presets


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class CsdSourceParams(_Section):
    """``dataset.source: csd``: which official sequences in ``dataset.root`` feed each stream."""

    words: str = Field("CMU_MOSI_TimestampedWords.csd", pattern=r"^[^/\\]+\.csd$")
    # "" = no official vectors: embed the words with extract.text.encoder instead.
    word_vectors: str = Field(
        "CMU_MOSI_TimestampedWordVectors.csd", pattern=r"^$|^[^/\\]+\.csd$"
    )
    audio: str = Field("CMU_MOSI_COVAREP.csd", pattern=r"^[^/\\]+\.csd$")
    vision: str = Field("CMU_MOSI_Visual_Facet_42.csd", pattern=r"^[^/\\]+\.csd$")
    labels: str = Field("CMU_MOSI_Opinion_Labels.csd", pattern=r"^[^/\\]+\.csd$")
    # Our .csd names (data/interim/<ds>/csd/<name>.csd) for the audio and vision streams.
    audio_name: str = Field("covarep", pattern=r"^[A-Za-z0-9_-]+$")
    vision_name: str = Field("facet42", pattern=r"^[A-Za-z0-9_-]+$")
    folds: Literal["mosi", "mosei", "none"] = "mosi"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)  # by video, only when folds: none

    @field_validator("audio_name", "vision_name")
    @classmethod
    def _not_text(cls, v: str) -> str:
        if v in ("words", "word_embeddings", "tokens"):
            raise ValueError(f"{v!r} is the name of a text sequence")
        return v

    @field_validator("split")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError(f"expected three fractions summing to 1, train > 0, got {list(v)}")
        return v


class PklSourceParams(_Section):
    """``dataset.source: mmsa_pkl``: the MMSA processed pickle to read (tasks/mmsa_pkl.py)."""

    # The pickle, relative to dataset.root (or absolute); None = dataset.root is the file.
    # Only this file is ever unpickled; pickles can run code, see `trusted`.
    file: str | None = Field(None, pattern=r"\.(pkl|pickle)$")
    # false: a numpy-only unpickler (refuses any other class); true: plain pickle.load.
    trusted: bool = False
    # Tokenizer/encoder of the pickle's text_bert ids and text features (SIMS:
    # bert-base-chinese); stored as the cache's text_encoder so a fine-tuned encoder matches.
    text_encoder: str = "bert-base-uncased"


class DatasetParams(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    # The preset (msaflow/presets.py) that filled this section's `auto` keys; params.yaml
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
    csd: CsdSourceParams = CsdSourceParams()
    pkl: PklSourceParams = PklSourceParams()

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


class AudioParams(_Section):
    feature_set: str = "librosa"  # a registered audio feature set (tasks/features)
    sample_rate: int = Field(ge=4000, le=96000)
    hop_seconds: float = Field(gt=0, le=1)


class VisionParams(_Section):
    feature_set: str = "facemesh"  # a registered vision feature set (tasks/features)
    fps: float = Field(gt=0, le=60)  # rows per second, both feature sets
    max_side: int = Field(ge=64)  # facemesh only: OpenFace sees the video as it is
    # openface: the FeatureExtraction executable ("" = find FeatureExtraction on PATH),
    # and the seconds one clip may run before it is reported as failed.
    openface_bin: str = ""
    openface_timeout: float = Field(600.0, gt=0)


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
    seeds: tuple[int, ...]
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
    plot: bool


class RobustnessParams(_Section):
    """The robustness stage: which splits, missing rates, noise levels, draws and seed."""

    splits: tuple[Literal["train", "valid", "test"], ...]
    rates: tuple[float, ...]  # missing rates: each token / row dropped with this probability
    levels: tuple[float, ...]  # noise std, in units of each feature's train std
    draws: int = Field(ge=1)  # random draws averaged per rate / level
    seed: int
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
    seed: int
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


