"""The contracts between stages, defined once: every stage imports them from here.

- split names and their aliases; MMSA's polarity classes;
- clip ids (``<video_id>$_$<clip>``, MMSA's convention) and what makes one valid;
- the manifest's columns (``ingest`` → every later stage), its reader and writer;
- the error reports' columns (``ingest_errors.csv``, ``extract_errors.csv``) and the row
  type ingest problems are recorded with;
- the error types a stage raises when it cannot go on.

docs/contracts.md describes the files; this module is what the code checks them with. It
imports nothing of the project's but ``tasks.io``: it sits at the bottom of ``tasks/``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tasks.io import atomic_path

if TYPE_CHECKING:  # pandas is imported where a frame is made: validating params needs none
    import pandas as pd

# --------------------------------------------------------------------------- splits, classes

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Spellings of the split names found in the wild (MMSA's mode column, MELD's dev, ...).
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "validation": "valid",
    "test": "test",
}
# MMSA's three-way polarity classes, in its label_map order: the manifest's label_class of a
# regression dataset is the index of the annotation among these.
POLARITY: tuple[str, ...] = ("Negative", "Neutral", "Positive")


def split_name(value: Any) -> str | None:
    """The split ``value`` spells (``dev`` → ``valid``), or None when it names none."""
    return SPLIT_ALIASES.get(str(value).strip().lower())


# --------------------------------------------------------------------------- clip ids

CLIP_SEP = "$_$"  # MMSA's separator: ids stay valid HDF5 names and match MMSA's pickles


def clip_id(video_id: str, clip: Any) -> str:
    """Our id of clip ``clip`` of ``video_id``."""
    return f"{video_id}{CLIP_SEP}{clip}"


def video_of(clip: str) -> str:
    """The video id a clip id starts with (the whole id when it has no separator)."""
    return clip.split(CLIP_SEP)[0]


def clip_part(clip: str) -> str:
    """The part of a clip id after its last separator (the whole id without one)."""
    return clip.rsplit(CLIP_SEP, 1)[-1]


def clip_id_problem(clip: str) -> str | None:
    """Why ``clip`` cannot be a clip id, or None when it can: an id names an HDF5 group, a
    ``.csd`` entry and files, so it must be non-empty, not ``.`` or ``..``, and hold no
    ``/``, ``\\``, control character or surrounding space."""
    if not clip:
        return "is empty"
    if clip in (".", ".."):
        return "is '.' or '..', which no file or HDF5 group may be called"
    if "/" in clip or "\\" in clip:
        return "holds a '/' or '\\' (a path separator)"
    if any(ord(c) < 32 or ord(c) == 127 for c in clip):
        return "holds a control character"
    if clip != clip.strip():
        return "starts or ends with a space"
    return None


def valid_clip_id(clip: str) -> bool:
    """Whether ``clip`` may be a clip id (``clip_id_problem`` finds nothing)."""
    return clip_id_problem(clip) is None


# --------------------------------------------------------------------------- manifest

MANIFEST_COLUMNS: tuple[str, ...] = (
    "clip_id",
    "video_id",
    "split",
    "media",
    "start",
    "end",
    "text",
    "label",
    "label_class",
    "annotation",
)
# Per-modality labels of CH-SIMS, carried along when the dataset has them.
SIMS_LABEL_COLUMNS: tuple[str, ...] = ("label_T", "label_A", "label_V")
# What every stage reading the manifest needs; others check their own extra columns.
MANIFEST_REQUIRED: tuple[str, ...] = ("clip_id", "media")


class ManifestError(ValueError):
    """A manifest that does not follow the contract; the message names the file and column."""


def write_manifest(path: str | Path, frame: pd.DataFrame) -> None:
    """Write the manifest (or any stage CSV) atomically: UTF-8, ``\\n`` line ends."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")


def _check_header(path: Path, header: Sequence[str], required: Iterable[str]) -> None:
    for column in required:
        if column not in header:
            raise ManifestError(f"{path}: manifest has no {column!r} column")


def manifest_chunks(
    path: str | Path,
    usecols: Sequence[str] | None = None,
    required: Sequence[str] = MANIFEST_REQUIRED,
    chunk_rows: int = 4096,
) -> Iterator[pd.DataFrame]:
    """The manifest a chunk of rows at a time, every cell as text (empty = not given).

    For manifests too large to hold as one frame (MOSEI's 23k segments are fine either way;
    this keeps a stage's memory independent of the dataset). ``required`` columns are
    checked first; ``usecols`` keeps only the named columns that exist.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run the `ingest` stage first)")
    header = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=0).columns
    _check_header(path, header, required)
    cols = None if usecols is None else [c for c in usecols if c in header]
    with pd.read_csv(path, dtype=str, keep_default_na=False, usecols=cols,
                     chunksize=chunk_rows) as chunks:
        yield from chunks


def read_manifest(
    path: str | Path, required: Sequence[str] = MANIFEST_REQUIRED, *, labels: bool = False
) -> pd.DataFrame:
    """The whole manifest, checked: required columns, unique clip ids, known splits.

    Cells are text (empty = not given); with ``labels`` the ``label`` column is float
    (NaN = unknown) and ``label_class`` an int, as the cache stage writes them.
    """
    import pandas as pd

    path = Path(path)
    frame = pd.concat(list(manifest_chunks(path, required=required)), ignore_index=True)
    if frame["clip_id"].duplicated().any():
        dup = frame.loc[frame["clip_id"].duplicated(), "clip_id"].iloc[0]
        raise ManifestError(f"{path}: duplicate clip_id {dup!r} in the manifest")
    if "split" in frame.columns:
        bad = frame.loc[~frame["split"].isin(SPLITS), "clip_id"].tolist()
        if bad:
            raise ManifestError(f"{path}: clip(s) {bad[:5]} have a split outside {SPLITS}")
    if labels:
        frame["label"] = pd.to_numeric(frame["label"], errors="coerce").astype("float32")
        frame["label_class"] = pd.to_numeric(frame["label_class"]).astype("int64")
    return frame


def seconds(value: Any) -> float | None:
    """A manifest ``start``/``end`` cell as seconds (empty, None or NaN = not given)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    out = float(value)
    return None if math.isnan(out) else out


def cell_text(value: Any) -> str:
    """A cell as stripped text; None/NaN (what pandas gives for empty cells) → ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


# --------------------------------------------------------------------------- error reports

INGEST_ERROR_COLUMNS: tuple[str, ...] = ("clip_id", "stage", "modality", "error")
EXTRACT_ERROR_COLUMNS: tuple[str, ...] = ("clip_id", "stage", "modality", "severity", "error")
KEPT, DROPPED = "clip kept", "clip dropped"


@dataclass(frozen=True)
class Issue:
    """One row of ``ingest_errors.csv``; ``drop`` says whether the clip was removed."""

    clip_id: str
    modality: str
    error: str
    drop: bool = True
    reason: str = ""  # short code for summaries: duplicate, split, label, media, id, ...
    stage: str = "ingest"

    def row(self) -> dict[str, str]:
        """The CSV row, with the outcome spelled out in the message."""
        outcome = DROPPED if self.drop else KEPT
        return {
            "clip_id": self.clip_id,
            "stage": self.stage,
            "modality": self.modality,
            "error": f"{self.error}; {outcome}",
        }


def write_report(path: str | Path, rows: Iterable[dict[str, Any]],
                 columns: Sequence[str]) -> pd.DataFrame:
    """Write an error report (header only when there is no row) atomically; the frame."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(columns))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    return frame


class ReportRows:
    """Rows appended to an open CSV a batch at a time, so a report never sits in memory whole.

    Each batch goes through ``DataFrame.to_csv`` (formatting is per value), so the file is
    byte for byte the one a single ``to_csv`` of all rows writes.
    """

    def __init__(self, file: IO[str], columns: list[str], to_csv: dict[str, Any],
                 batch: int = 1024) -> None:
        import pandas as pd

        self._file, self.columns, self._to_csv, self.batch = file, columns, to_csv, batch
        self._rows: list[dict[str, Any]] = []
        self.count = 0
        pd.DataFrame(columns=columns).to_csv(file, index=False, **to_csv)  # the header

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row; a full batch is written out."""
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.batch:
            self.flush()

    @property
    def pending(self) -> int:
        """Rows queued in memory, not yet written."""
        return len(self._rows)

    def flush(self) -> None:
        """Write the queued rows."""
        import pandas as pd

        if self._rows:
            frame = pd.DataFrame(self._rows, columns=self.columns)
            frame.to_csv(self._file, index=False, header=False, **self._to_csv)
            self._rows.clear()


@contextlib.contextmanager
def report_rows(path: Path, columns: list[str], **to_csv: Any) -> Iterator[ReportRows]:
    """A ``ReportRows`` on a temporary sibling that replaces ``path`` only if the block
    succeeds: rows of a manifest or report too large to hold go to disk as they come."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as file:
        rows = ReportRows(file, columns, to_csv)
        yield rows
        rows.flush()


# --------------------------------------------------------------------------- error types


class IngestError(ValueError):
    """The raw dataset cannot be ingested at all (missing file/column, nothing usable)."""


class SourceError(ValueError):
    """A source dataset the pipeline cannot use at all; the message names file and place."""


class MediaError(ValueError):
    """A media file that cannot be used: unreadable, truncated, or missing a stream."""


class StreamMissing(MediaError):
    """The media has no stream of that kind (no audio track, no video track): the modality
    is absent from the clip rather than broken (``predict`` scores it absent)."""


class SilentAudio(StreamMissing):
    """The audio stream holds no sound (digital silence): audio is absent from the clip, as
    from a video without an audio stream."""


class ExtractError(ValueError):
    """Input that decodes but cannot give features (silent audio, empty transcript, ...)."""


class ExtractionFailed(RuntimeError):
    """The extract stage failed: a clip under ``fail_fast`` or too many failed clips."""


class CacheError(ValueError):
    """Inputs the cache stage cannot use; the message names the file / clip / key."""


__all__ = [
    "CLIP_SEP",
    "DROPPED",
    "EXTRACT_ERROR_COLUMNS",
    "INGEST_ERROR_COLUMNS",
    "KEPT",
    "MANIFEST_COLUMNS",
    "MANIFEST_REQUIRED",
    "POLARITY",
    "SIMS_LABEL_COLUMNS",
    "SPLITS",
    "SPLIT_ALIASES",
    "CacheError",
    "ExtractError",
    "ExtractionFailed",
    "IngestError",
    "Issue",
    "ManifestError",
    "ReportRows",
    "MediaError",
    "StreamMissing",
    "SilentAudio",
    "SourceError",
    "cell_text",
    "clip_id",
    "clip_part",
    "manifest_chunks",
    "read_manifest",
    "report_rows",
    "seconds",
    "split_name",
    "valid_clip_id",
    "clip_id_problem",
    "video_of",
    "write_manifest",
    "write_report",
]
