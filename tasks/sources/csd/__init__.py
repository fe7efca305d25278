"""Source ``csd``: official CMU computational sequences, entering past the media layer.

``dataset.root`` holds the official MOSI/MOSEI computational sequences; ``dataset.csd`` (this
source's params, :class:`CsdParams`) names the file of each stream. The labels sequence has
one row per opinion segment of a video, its interval being the segment's place in the
video; each segment is a clip:

    clip_id = ``<video_id>$_$<i>``, ``i`` = the segment's 0-based row in the labels entry,

i.e. the segment mmsdk calls ``<video_id>[i]`` after ``align(labels)``, spelled with MMSA's
separator so that ids stay valid HDF5 names and match the other sources' convention.
``manifest`` is the ingest step, ``extract`` the extract step; this file registers the
source without importing either.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from config.schema import PluginParams
from tasks import sources


class CsdParams(PluginParams):
    """``dataset.csd``: which official sequences in ``dataset.root`` feed each stream."""


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


def streams(params: Any) -> dict[str, str]:
    """Our ``.csd`` names of the audio and vision streams (``dataset.csd.*_name``)."""
    return {"audio": params.dataset.csd.audio_name, "vision": params.dataset.csd.vision_name}


sources.register(sources.Source(
    name="csd",
    about="official CMU computational sequences (.csd files in dataset.root)",
    manifest="tasks.sources.csd.manifest:csd_manifest",
    extract="tasks.sources.csd.extract:csd_extract",
    streams=streams,
    section="csd",
    params=CsdParams,
))
