"""Stage ``ingest``: a dataset's raw layout → ``manifest.csv`` + ``ingest_errors.csv``.

A layout reader (``READERS[params.dataset.layout]``) turns the raw files into candidate
rows in manifest columns plus the problems only it can see (encoding, ids). The checks
every layout shares (split names, labels, duplicates, media files, transcripts) run after
it, so a new layout only has to parse.

Bad rows never stop the run unless ``ingest.fail_fast`` (or ``ingest.on_duplicate: fail``)
asks for it: each is written to ``ingest_errors.csv`` with the reason and dropped. Rows
that are usable but suspicious (empty transcript, undecodable bytes in label.csv replaced
by U+FFFD) are kept and reported with the message ending in "clip kept".
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from msaflow.io import atomic_path
from msaflow.params import Params
from msaflow.paths import Paths

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
# Per-modality labels of CH-SIMS, carried along when the label.csv has them.
EXTRA_LABEL_COLUMNS: tuple[str, ...] = ("label_T", "label_A", "label_V")
ERROR_COLUMNS: tuple[str, ...] = ("clip_id", "stage", "modality", "error")
MMSA_COLUMNS: tuple[str, ...] = ("video_id", "clip_id", "text", "label", "annotation", "mode")
# MMSA's three-way polarity classes, in its label_map order.
MMSA_CLASSES: tuple[str, ...] = ("Negative", "Neutral", "Positive")
SPLITS: dict[str, str] = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "validation": "valid",
    "test": "test",
}
KEPT, DROPPED = "clip kept", "clip dropped"


class IngestError(ValueError):
    """The raw dataset cannot be ingested at all (missing file/column, nothing usable)."""


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


Reader = Callable[[Params], tuple[pd.DataFrame, list[Issue]]]


def _decode_lines(raw: bytes, encoding: str) -> tuple[list[str], dict[int, str]]:
    """Decode line by line so a bad byte costs one line, not the file; report where it was."""
    lines, bad = [], {}
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            lines.append(line.decode(encoding))
        except UnicodeDecodeError as err:
            bad[number] = f"byte 0x{line[err.start]:02x} at column {err.start + 1}"
            lines.append(line.decode(encoding, errors="replace"))
    return lines, bad


def _float_or_nan(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_mmsa(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """MMSA raw layout: ``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4`` → candidate rows."""
    root = Path(params.dataset.root)
    label_csv = root / "label.csv"
    if not label_csv.is_file():
        raise IngestError(f"{label_csv}: label file not found (dataset.root = {root})")
    # utf-8-sig also strips the BOM that spreadsheet exports put before 'video_id'.
    encoding = params.ingest.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    lines, bad_lines = _decode_lines(label_csv.read_bytes(), encoding)
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    header = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in MMSA_COLUMNS if c not in header]
    if missing:
        raise IngestError(
            f"{label_csv}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    reader.fieldnames = header
    extras = [c for c in EXTRA_LABEL_COLUMNS if c in header]

    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    previous_end = 1  # the header's last line; a quoted newline can make a record span lines
    for record in reader:
        first_line, previous_end = previous_end + 1, reader.line_num
        where = f"{label_csv} line {first_line}"
        video_id = (record.get("video_id") or "").strip()
        clip = (record.get("clip_id") or "").strip()
        clip_id = f"{video_id}$_${clip}"
        if not video_id or not clip or "/" in clip_id or None in record:
            reason = (
                "has more fields than the header"
                if None in record
                else f"video_id {video_id!r} / clip_id {clip!r} must be non-empty and '/'-free"
            )
            issues.append(Issue(clip_id, "id", f"{where}: {reason}", reason="id"))
            continue
        spans = [n for n in range(first_line, previous_end + 1) if n in bad_lines]
        for n in spans:
            issues.append(
                Issue(
                    clip_id,
                    "text",
                    f"{label_csv} line {n}: not valid {params.ingest.encoding} "
                    f"({bad_lines[n]}), decoded with U+FFFD replacement",
                    drop=False,
                    reason="encoding",
                )
            )
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "video_id": video_id,
            "split": (record.get("mode") or "").strip(),
            "media": root / "Raw" / video_id / f"{clip}.mp4",
            "start": math.nan,
            "end": math.nan,
            "text": (record.get("text") or "").strip(),
            "label": record.get("label") or "",
            "label_class": -1,
            "annotation": (record.get("annotation") or "").strip(),
            "source_line": first_line,
        }
        for col in extras:
            row[col] = _float_or_nan(record.get(col))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, *extras, "source_line"])
    frame.attrs["source"] = str(label_csv)
    return frame, issues


READERS: dict[str, Reader] = {"mmsa": read_mmsa}


def _text(value: Any) -> str:
    """A cell as stripped text; None/NaN (what pandas gives for empty cells) → ''."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _polarity(label: float) -> str:
    return MMSA_CLASSES[0] if label < 0 else MMSA_CLASSES[1] if label == 0 else MMSA_CLASSES[2]


def _media_path(path: Path, repo_root: Path) -> str:
    """Relative to the repo root when inside it (portable checkouts), else absolute."""
    full = path if path.is_absolute() else repo_root / path
    full = full.resolve()
    try:
        return full.relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def check_rows(
    frame: pd.DataFrame, params: Params, repo_root: Path
) -> tuple[pd.DataFrame, list[Issue]]:
    """Checks shared by every layout: split, label, duplicates, media; return kept rows."""
    source = frame.attrs.get("source", str(params.dataset.root))
    low, high = params.dataset.label_range
    seen: dict[str, str] = {}
    kept: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for i, row in enumerate(frame.to_dict("records")):
        clip_id = row["clip_id"]
        # Readers may say where a row came from (source_line); messages point there.
        line = row.pop("source_line", None)
        where = f"{source} line {line}" if line is not None else f"{source} row {i + 1}"
        if clip_id in seen:
            error = f"{where}: duplicate clip id (first at {seen[clip_id]})"
            issues.append(Issue(clip_id, "id", error, reason="duplicate"))
            continue
        seen[clip_id] = where.removeprefix(f"{source} ")
        split = SPLITS.get(str(row["split"]).strip().lower())
        if split is None:
            error = f"{where}: unknown mode {row['split']!r} (expected train/valid/test)"
            issues.append(Issue(clip_id, "split", error, reason="split"))
            continue
        try:
            label = float(row["label"])
        except (TypeError, ValueError):
            label = math.nan
        if not math.isfinite(label):
            error = f"{where}: label {row['label']!r} is missing or not a number"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        if not low <= label <= high:
            error = f"{where}: label {label} outside [{low}, {high}]"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        media = Path(row["media"])
        full = media if media.is_absolute() else repo_root / media
        if not full.is_file():
            error = f"{where}: media file {media} not found"
            issues.append(Issue(clip_id, "media", error, reason="media"))
            continue
        if full.stat().st_size == 0:
            error = f"{where}: media file {media} is empty"
            issues.append(Issue(clip_id, "media", error, reason="media"))
            continue
        # The class follows the annotation; a row without one gets its label's polarity.
        annotation = _text(row["annotation"]) or _polarity(label)
        matches = [k for k, name in enumerate(MMSA_CLASSES) if name.lower() == annotation.lower()]
        if not matches:
            error = f"{where}: unknown annotation {annotation!r}, label_class -1"
            issues.append(Issue(clip_id, "label", error, drop=False, reason="annotation"))
        if not _text(row["text"]):
            error = f"{where}: empty transcript"
            issues.append(Issue(clip_id, "text", error, drop=False, reason="empty_text"))
        row.update(
            split=split,
            label=label,
            media=_media_path(media, repo_root),
            annotation=MMSA_CLASSES[matches[0]] if matches else annotation,
            label_class=matches[0] if matches else -1,
        )
        kept.append(row)
    columns = [c for c in frame.columns if c != "source_line"]
    out = pd.DataFrame(kept, columns=columns)
    out["label"] = out["label"].astype(float)
    out["label_class"] = out["label_class"].astype(int)
    return out, issues


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")


def build_manifest(params: Params, paths: Paths) -> dict[str, Any]:
    """Read the raw layout, check every row, write manifest + errors; return a summary."""
    # Relative paths (dataset.root, media) are relative to the repo root, i.e. the cwd
    # DVC and the flows run in.
    repo_root = Path.cwd()
    reader = READERS.get(params.dataset.layout)
    if reader is None:
        raise IngestError(f"dataset.layout {params.dataset.layout!r}: no reader ({list(READERS)})")
    candidates, issues = reader(params)
    n_rows = len(candidates) + sum(1 for x in issues if x.drop)
    kept, more = check_rows(candidates, params, repo_root)
    issues += more

    dropped = [x for x in issues if x.drop]
    duplicates = [x for x in dropped if x.reason == "duplicate"]
    if duplicates and params.ingest.on_duplicate == "fail":
        raise IngestError(
            f"{len(duplicates)} duplicate clip id(s) (ingest.on_duplicate: fail); "
            f"first: {duplicates[0].error}"
        )
    if dropped and params.ingest.fail_fast:
        raise IngestError(
            f"{dropped[0].error} (ingest.fail_fast: true; {len(dropped)} bad row(s) in all)"
        )
    reasons = Counter(x.reason for x in dropped)
    if kept.empty:
        detail = ", ".join(f"{k}: {v}" for k, v in reasons.most_common()) or "no rows"
        first = f"; first: {dropped[0].error}" if dropped else ""
        raise IngestError(
            f"{params.dataset.root}: no usable clip among {n_rows} row(s) ({detail}){first}"
        )

    paths.interim.mkdir(parents=True, exist_ok=True)
    _write_csv(paths.manifest, kept)
    errors = pd.DataFrame([x.row() for x in issues], columns=list(ERROR_COLUMNS))
    _write_csv(paths.ingest_errors, errors)

    split_counts = kept["split"].value_counts()
    return {
        "rows": n_rows,
        "clips": len(kept),
        "dropped": len(dropped),
        "warnings": len(issues) - len(dropped),
        **{f"{s}_clips": int(split_counts.get(s, 0)) for s in ("train", "valid", "test")},
        **{f"dropped_{k}": v for k, v in sorted(reasons.items())},
        "extra_columns": [c for c in kept.columns if c not in MANIFEST_COLUMNS],
    }
