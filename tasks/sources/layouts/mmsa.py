"""Raw layout ``mmsa`` (MMSA / MOSI / SIMS style): ``label.csv`` + ``Raw/<video>/<clip>.mp4``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.schema import Params
from tasks import contracts
from tasks.contracts import (
    MANIFEST_COLUMNS,
    SIMS_LABEL_COLUMNS,
    IngestError,
    Issue,
    clip_id_problem,
)
from tasks.sources.layouts import register
from tasks.sources.raw import encoding_issues, float_or_nan
from tasks.userfiles import read_csv

if TYPE_CHECKING:  # pandas is imported where a frame is made: validating params needs none
    import pandas as pd

LABEL_FILE = "label.csv"
MMSA_COLUMNS: tuple[str, ...] = ("video_id", "clip_id", "text", "label", "annotation", "mode")


@register("mmsa", about="MMSA raw clips: Raw/<video_id>/<clip_id>.mp4 + label.csv")
def read_mmsa(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """MMSA raw layout: ``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4`` → candidate rows."""
    import pandas as pd

    root = Path(params.dataset.root)
    label_csv = root / LABEL_FILE
    if not label_csv.is_file():
        raise IngestError(f"{label_csv}: label file not found (dataset.root = {root})")
    table = read_csv(label_csv, params.ingest.encoding)  # a BOM before 'video_id' goes
    header = table.header
    missing = [c for c in MMSA_COLUMNS if c not in header]
    if missing:
        raise IngestError(
            f"{label_csv}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    extras = [c for c in SIMS_LABEL_COLUMNS if c in header]

    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for first_line, last_line, record in table:
        where = f"{label_csv} line {first_line}"
        video_id = (record.get("video_id") or "").strip()
        clip = (record.get("clip_id") or "").strip()
        clip_id = contracts.clip_id(video_id, clip)
        bad_part = next((f"{name} {part!r} {problem}" for name, part in
                         (("video_id", video_id), ("clip_id", clip))
                         if (problem := clip_id_problem(part)) is not None), None)
        if bad_part is not None or None in record:
            # each part names a folder or a file of Raw/<video_id>/<clip_id>.mp4 too
            reason = "has more fields than the header" if None in record else bad_part
            issues.append(Issue(clip_id, "id", f"{where}: {reason}", reason="id"))
            continue
        issues += encoding_issues(clip_id, table, first_line, last_line)
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
            row[col] = float_or_nan(record.get(col))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, *extras, "source_line"])
    frame.attrs["source"] = str(label_csv)
    return frame, issues

