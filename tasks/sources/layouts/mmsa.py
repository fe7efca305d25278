"""Raw layout ``mmsa`` (MMSA / MOSI / SIMS style): ``label.csv`` + ``Raw/<video>/<clip>.mp4``."""

from __future__ import annotations

import codecs
import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.schema import Params
from tasks import contracts
from tasks.contracts import MANIFEST_COLUMNS, SIMS_LABEL_COLUMNS, IngestError, Issue
from tasks.sources.layouts import register
from tasks.sources.raw import decode_lines, float_or_nan

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
    # utf-8-sig also strips the BOM that spreadsheet exports put before 'video_id'.
    encoding = params.ingest.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    lines, bad_lines = decode_lines(label_csv.read_bytes(), encoding)
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    header = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in MMSA_COLUMNS if c not in header]
    if missing:
        raise IngestError(
            f"{label_csv}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    reader.fieldnames = header
    extras = [c for c in SIMS_LABEL_COLUMNS if c in header]

    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    previous_end = 1  # the header's last line; a quoted newline can make a record span lines
    for record in reader:
        first_line, previous_end = previous_end + 1, reader.line_num
        where = f"{label_csv} line {first_line}"
        video_id = (record.get("video_id") or "").strip()
        clip = (record.get("clip_id") or "").strip()
        clip_id = contracts.clip_id(video_id, clip)
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
            row[col] = float_or_nan(record.get(col))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, *extras, "source_line"])
    frame.attrs["source"] = str(label_csv)
    return frame, issues

