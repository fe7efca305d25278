"""Raw layout ``folder``: a user's own media + ``clips.csv`` (clip_id, path[, text, ...])."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from config.schema import Params
from tasks.contracts import MANIFEST_COLUMNS, IngestError, Issue, cell_text
from tasks.sources.layouts import register
from tasks.sources.raw import encoding_issues, float_or_nan
from tasks.userfiles import read_csv

if TYPE_CHECKING:  # pandas is imported where a frame is made: validating params needs none
    import pandas as pd

FOLDER_CSV = "clips.csv"
FOLDER_REQUIRED: tuple[str, ...] = ("clip_id", "path")
FOLDER_OPTIONAL: tuple[str, ...] = ("text", "label", "split", "video_id", "start", "end")
FOLDER_SPLIT: tuple[float, float, float] = (0.8, 0.1, 0.1)


def folder_splits(clip_ids: list[str], seed: int) -> dict[str, str]:
    """Seeded 80/10/10 train/valid/test by clip (sorted ids, so row order does not matter)."""
    order = sorted(set(clip_ids))
    perm = np.random.default_rng(seed).permutation(len(order))
    n_train = round(FOLDER_SPLIT[0] * len(order))
    n_valid = round(FOLDER_SPLIT[1] * len(order))
    names = ["train"] * n_train + ["valid"] * n_valid
    names += ["test"] * (len(order) - len(names))
    return {order[i]: names[k] for k, i in enumerate(perm)}


@register("folder", about="your own media: clips.csv (clip_id, path[, text, label, split, ...])")
def read_folder(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """Own media: ``clips.csv`` (clip_id, path[, text, label, split, ...]) in dataset.root."""
    import pandas as pd

    root = Path(params.dataset.root)
    # dataset.root may name the CSV itself; media paths are relative to its folder.
    path = root if root.suffix.lower() == ".csv" else root / FOLDER_CSV
    folder = path.parent
    if not path.is_file():
        raise IngestError(f"{path}: clip list not found (dataset.root = {root})")
    table = read_csv(path, params.ingest.encoding)
    header = table.header
    missing = [c for c in FOLDER_REQUIRED if c not in header]
    unknown = [c for c in header if c not in (*FOLDER_REQUIRED, *FOLDER_OPTIONAL)]
    if missing or unknown:
        problem = (
            f"missing column(s) {', '.join(missing)}"
            if missing
            else f"unknown column(s) {', '.join(unknown)}"
        )
        raise IngestError(
            f"{path}: {problem} (expected {', '.join(FOLDER_REQUIRED)} and optionally "
            f"{', '.join(FOLDER_OPTIONAL)}; header: {', '.join(header)})"
        )
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for first_line, last_line, record in table:
        where = f"{path} line {first_line}"
        clip_id, media = cell_text(record.get("clip_id")), cell_text(record.get("path"))
        if not media or None in record:
            reason = ("has more fields than the header" if None in record
                      else f"path {media!r} is empty")
            issues.append(Issue(clip_id, "id", f"{where}: {reason}", reason="id"))
            continue
        label_text = cell_text(record.get("label"))
        label = float_or_nan(label_text)
        if label_text and not math.isfinite(label):
            error = f"{where}: label {label_text!r} is not a number"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        window = [cell_text(record.get(k)) for k in ("start", "end")]
        times = [float_or_nan(t) for t in window]
        if any(t and not math.isfinite(x) for t, x in zip(window, times, strict=True)) or (
            all(math.isfinite(x) for x in times) and not 0 <= times[0] < times[1]
        ):
            error = f"{where}: bad time window start {window[0]!r} end {window[1]!r} (seconds)"
            issues.append(Issue(clip_id, "time", error, reason="time"))
            continue
        issues += encoding_issues(clip_id, table, first_line, last_line)
        rows.append({
            "clip_id": clip_id,
            "video_id": cell_text(record.get("video_id")) or clip_id,
            "split": cell_text(record.get("split")),
            "media": folder / media,
            "start": times[0],
            "end": times[1],
            "text": cell_text(record.get("text")),
            "label": label,
            "label_class": -1,
            "annotation": "",
            "source_line": first_line,
        })
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "source_line"])
    if "split" not in header and len(frame):
        splits = folder_splits(frame["clip_id"].tolist(), params.seed)
        frame["split"] = frame["clip_id"].map(splits)
    frame.attrs.update(source=str(path), label_optional=True)
    return frame, issues

