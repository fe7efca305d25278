"""`predict`: each video's transcript (typed, from a CSV, or from speech recognition)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from config.schema import ExtractParams, Params
from tasks.predict.model import PredictError
from tasks.userfiles import UserCsv, read_csv


def read_transcripts(path: str | Path) -> UserCsv:
    """A transcripts CSV: a ``text`` column and a ``path`` and/or ``clip_id`` column, decoded
    as ingest decodes a label file (a byte that is not UTF-8 costs its line a U+FFFD, and
    the video's notes say so)."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: transcripts file not found")
    table = read_csv(path)
    if "text" not in table.header or not {"path", "clip_id"} & set(table.header):
        raise PredictError(
            f"{path}: expected columns text and path (or clip_id = the video's file name "
            f"without extension), got {table.header}"
        )
    return table


def transcript_for(video: Path, table: UserCsv) -> tuple[str | None, list[str]]:
    """The transcript of ``video`` in ``table`` (by path, else by file stem; None if
    absent), and what to note about it (its line did not decode)."""
    target = video.resolve()
    hits: list[tuple[int, int, str]] = []
    for first, last, row in table:
        given = (row.get("path") or "").strip()
        text = row.get("text") or ""
        if given:
            p = Path(given).expanduser()
            candidates = [p] if p.is_absolute() else [p, table.path.parent / p]
            if any(c.resolve() == target for c in candidates):
                hits.append((first, last, text))
                continue
        if (row.get("clip_id") or "").strip() == video.stem:
            hits.append((first, last, text))
    texts = {t for _, _, t in hits}
    if len(texts) > 1:
        lines = [first for first, _, _ in hits]
        raise PredictError(f"{table.path}: lines {lines} give different transcripts for "
                           f"{video}")
    if not hits:
        return None, []
    first, last, text = hits[0]
    return text, table.decoding_problems(first, last)


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



