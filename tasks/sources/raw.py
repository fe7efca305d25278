"""Source ``raw``: media files + labels, read by a layout and checked the same way for all.

A layout (``tasks/sources/layouts/<layout>.py``, ``dataset.layout``) turns a dataset's release into
candidate rows in manifest columns plus the problems only it can see (encoding, ids). The
checks every layout shares (split names, labels, duplicates, media files, transcripts) run
after it here, so a new layout only has to parse; its features come from the media through
the extract stage's feature sets.

Bad rows never stop the run unless ``ingest.fail_fast`` (or ``ingest.on_duplicate: fail``)
asks for it: each is written to ``ingest_errors.csv`` with the reason and dropped. Rows
that are usable but suspicious (empty transcript, undecodable bytes in a label file
replaced by U+FFFD) are kept and reported with the message ending in "clip kept".
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.paths import Paths
from config.schema import Params
from tasks import sources
from tasks.contracts import (
    INGEST_ERROR_COLUMNS,
    MANIFEST_COLUMNS,
    POLARITY,
    IngestError,
    Issue,
    cell_text,
    clip_id_problem,
    split_name,
    write_manifest,
    write_report,
)
from tasks.metrics import polarity
from tasks.sources import layouts
from tasks.userfiles import UserCsv

if TYPE_CHECKING:  # pandas is imported where a frame is made: validating params needs none
    import pandas as pd


def float_or_nan(value: str | None) -> float:
    """A cell as a float; empty or not a number → NaN."""
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan



def encoding_issues(clip_id: str, table: UserCsv, first: int, last: int) -> list[Issue]:
    """A kept-clip warning for each line ``first``..``last`` of ``table`` that did not
    decode."""
    return [Issue(clip_id, "text", problem, drop=False, reason="encoding")
            for problem in table.decoding_problems(first, last)]


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
    """Checks shared by every layout: split, label, duplicates, media; return kept rows.

    A reader's ``frame.attrs`` may set ``classes`` (label_class = index of the annotation
    among these names; an annotation outside them drops the row) and ``label_optional``
    (a missing label is kept as NaN instead of dropping the row).
    """
    import pandas as pd

    source = frame.attrs.get("source", str(params.dataset.root))
    classes: tuple[str, ...] | None = frame.attrs.get("classes")
    label_optional = bool(frame.attrs.get("label_optional", False))
    low, high = params.dataset.label_range
    seen: dict[str, str] = {}
    kept: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for i, row in enumerate(frame.to_dict("records")):
        clip_id = row["clip_id"]
        # Readers may say where a row came from (source_line); messages point there.
        line = row.pop("source_line", None)
        file = row.pop("source_file", None) or source
        where = f"{file} line {line}" if line is not None else f"{file} row {i + 1}"
        if (problem := clip_id_problem(clip_id)) is not None:
            error = f"{where}: clip id {clip_id!r} {problem}"
            issues.append(Issue(clip_id, "id", error, reason="id"))
            continue
        if clip_id in seen:
            error = f"{where}: duplicate clip id (first at {seen[clip_id]})"
            issues.append(Issue(clip_id, "id", error, reason="duplicate"))
            continue
        seen[clip_id] = where.removeprefix(f"{source} ") if file == source else where
        split = split_name(row["split"])
        if split is None:
            error = f"{where}: unknown mode {row['split']!r} (expected train/valid/test)"
            issues.append(Issue(clip_id, "split", error, reason="split"))
            continue
        try:
            label = float(row["label"])
        except (TypeError, ValueError):
            label = math.nan
        if not math.isfinite(label) and not label_optional:
            error = f"{where}: label {row['label']!r} is missing or not a number"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        if not math.isfinite(label) and not cell_text(row["annotation"]):
            error = (f"{where}: no label: the clip's features are extracted, but no training "
                     "or metric can use it")
            issues.append(Issue(clip_id, "label", error, drop=False, reason="no_label"))
        if math.isfinite(label) and not low <= label <= high:
            error = f"{where}: label {label} outside [{low}, {high}]"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        annotation = cell_text(row["annotation"])
        if classes is not None:
            matches = [k for k, name in enumerate(classes) if name.lower() == annotation.lower()]
            if not matches:
                error = f"{where}: class {annotation!r} not in ({', '.join(classes)})"
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
        names = classes if classes is not None else POLARITY
        if classes is None:
            # The class follows the annotation; a row without one gets its label's polarity
            # (none at all when the label is unknown too: label_class -1, no warning).
            if not annotation and math.isfinite(label):
                annotation = polarity(label)
            matches = [k for k, name in enumerate(names) if name.lower() == annotation.lower()]
            if annotation and not matches:
                error = f"{where}: unknown annotation {annotation!r}, label_class -1"
                issues.append(Issue(clip_id, "label", error, drop=False, reason="annotation"))
        if not cell_text(row["text"]):
            error = f"{where}: empty transcript"
            issues.append(Issue(clip_id, "text", error, drop=False, reason="empty_text"))
        row.update(
            split=split,
            label=label,
            media=_media_path(media, repo_root),
            annotation=names[matches[0]] if matches else annotation,
            label_class=matches[0] if matches else -1,
        )
        kept.append(row)
    columns = [c for c in frame.columns if c not in ("source_line", "source_file")]
    out = pd.DataFrame(kept, columns=columns)
    out["label"] = out["label"].astype(float)
    out["label_class"] = out["label_class"].astype(int)
    return out, issues


def build_manifest(params: Params, paths: Paths) -> dict[str, Any]:
    """Read the raw layout, check every row, write manifest + errors; return a summary."""
    # Relative paths (dataset.root, media) are relative to the repo root, i.e. the cwd
    # DVC and the flows run in.
    repo_root = Path.cwd()
    candidates, issues = layouts.get(params.dataset.layout).read(params)
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
    write_manifest(paths.manifest, kept)
    write_report(paths.ingest_errors, (x.row() for x in issues), INGEST_ERROR_COLUMNS)

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


sources.register(sources.Source(
    name="raw",
    about="media files + labels in one of the raw layouts (dataset.layout), through the "
    "extractors",
    manifest="tasks.sources.raw:build_manifest",
    streams=lambda params: {
        "audio": params.extract.audio.feature_set,
        "vision": params.extract.vision.feature_set,
    },
))
