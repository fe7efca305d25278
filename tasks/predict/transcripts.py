"""`predict`: each video's transcript (typed, from a CSV, or from speech recognition)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from config.schema import ExtractParams, Params
from tasks.predict.model import PredictError


def read_transcripts(path: str | Path) -> pd.DataFrame:
    """A transcripts CSV: a ``text`` column and a ``path`` and/or ``clip_id`` column."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: transcripts file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "text" not in frame.columns or not {"path", "clip_id"} & set(frame.columns):
        raise PredictError(
            f"{path}: expected columns text and path (or clip_id = the video's file name "
            f"without extension), got {list(frame.columns)}"
        )
    return frame


def transcript_for(video: Path, table: pd.DataFrame, source: Path) -> str | None:
    """The transcript of ``video`` in ``table`` (by path, else by file stem); None if absent."""
    target = video.resolve()
    hits: list[tuple[int, str]] = []
    for i, row in enumerate(table.to_dict("records")):
        given = str(row.get("path", "")).strip()
        if given:
            p = Path(given).expanduser()
            candidates = [p] if p.is_absolute() else [p, source.parent / p]
            if any(c.resolve() == target for c in candidates):
                hits.append((i, row["text"]))
                continue
        if str(row.get("clip_id", "")).strip() == video.stem:
            hits.append((i, row["text"]))
    texts = {t for _, t in hits}
    if len(texts) > 1:
        rows = [i + 2 for i, _ in hits]  # 1-based, after the header line
        raise PredictError(f"{source}: lines {rows} give different transcripts for {video}")
    return hits[0][1] if hits else None



def asr_for(params: Params, asr: str | None) -> ExtractParams:
    """The extract params predict runs with: ``asr`` (``--asr``) when given; else the
    params' own engine; else ``pocketsphinx`` for English (it ships offline), so a video
    without a transcript still gets a text modality."""
    text = params.extract.text
    if asr is None:
        asr = text.asr if text.asr != "none" else "pocketsphinx" if text.language == "en" \
            else "none"
    try:
        chosen = type(text).model_validate({**text.model_dump(), "asr": asr})
    except ValidationError as err:
        raise PredictError(f"--asr {asr}: {err.errors()[0]['msg']}") from None
    return params.extract.model_copy(update={"text": chosen})



