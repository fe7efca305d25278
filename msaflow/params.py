"""params.yaml: typed, frozen and validated on load.

Every stage reads its knobs from here. A wrong type or an unknown key stops the run with a
message that names the dotted key (``extract.audio.sample_rate: ...``), never deep inside a
stage.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from msaflow import presets

DEFAULT_PARAMS = Path("params.yaml")


class ParamsError(ValueError):
    """A params file that does not match the schema; the message names the key."""


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
    source: Literal["raw", "csd", "mmsa_pkl"] = "raw"
    root: Path
    layout: Literal["mmsa", "meld", "iemocap", "folder"] = "mmsa"
    # Which labels become label_class: meld emotion | sentiment, iemocap 4class | 6class;
    # auto = emotion / 4class (meld: sentiment when task is regression); mmsa/folder: auto.
    target: Literal["auto", "emotion", "sentiment", "4class", "6class"] = "auto"
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

    @model_validator(mode="after")
    def _target_fits_layout(self) -> DatasetParams:
        allowed = {"meld": ("emotion", "sentiment"), "iemocap": ("4class", "6class")}
        choices = allowed.get(self.layout, ())
        if self.target != "auto" and self.target not in choices:
            raise ValueError(
                f"target {self.target!r} does not apply to layout {self.layout!r} "
                f"(expected auto{''.join(f' | {c}' for c in choices)})"
            )
        if self.task == "regression" and (
            self.layout == "iemocap" or (self.layout == "meld" and self.target == "emotion")
        ):
            raise ValueError(
                f"layout {self.layout!r} target {self.target!r} has only class labels: "
                "set dataset.task: classification"
            )
        return self


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
    feature_set: Literal["librosa", "egemaps"] = "librosa"
    sample_rate: int = Field(ge=4000, le=96000)
    hop_seconds: float = Field(gt=0, le=1)


class VisionParams(_Section):
    feature_set: Literal["facemesh", "openface"] = "facemesh"
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


class ExtractParams(_Section):
    workers: int = Field(ge=1)
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
    num_workers: int = Field(ge=0)
    # Cross-entropy class weights (classification): none | balanced (inverse class frequency
    # of the train split, mean 1; tasks/train.py) | one non-negative weight per class.
    class_weights: str | tuple[float, ...] = "none"

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

    def stream_feature_sets(self) -> dict[str, str]:
        """Feature-set names (= ``.csd`` stems) of the audio and vision streams."""
        if self.dataset.source == "csd":
            return {"audio": self.dataset.csd.audio_name, "vision": self.dataset.csd.vision_name}
        return {
            "audio": self.extract.audio.feature_set,
            "vision": self.extract.vision.feature_set,
        }

    def model_params(self, name: str) -> dict[str, Any]:
        """The raw hyper-parameter dict of one model (validated by its config class)."""
        return dict(self.models[name])


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
            lines.append(f"  {key}: {e['msg']}{got_s}")
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


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Resolve presets and validate a params mapping; raise ParamsError naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    raw = resolve_presets(raw, source)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


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
