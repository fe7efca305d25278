"""Raw layout ``meld``: ``{train,dev,test}_sent_emo.csv`` + ``dia{D}_utt{U}.mp4`` per split."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.schema import Params
from tasks import contracts
from tasks.contracts import MANIFEST_COLUMNS, IngestError, Issue, cell_text
from tasks.sources.layouts import register
from tasks.sources.raw import encoding_issues
from tasks.userfiles import read_csv

if TYPE_CHECKING:  # pandas is imported where a frame is made: validating params needs none
    import pandas as pd

MELD_EMOTIONS: tuple[str, ...] = (
    "anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"
)
MELD_SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
MELD_COLUMNS: tuple[str, ...] = (
    "Utterance", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "StartTime", "EndTime"
)
# Each split's CSV and the clip folders it may sit in: the official archive names first.
MELD_SPLITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("train_sent_emo.csv", ("train_splits", "train")),
    "valid": ("dev_sent_emo.csv", ("dev_splits_complete", "dev_splits", "dev")),
    "test": ("test_sent_emo.csv", ("output_repeated_splits_test", "test_splits", "test")),
}
_MELD_TIME = re.compile(r"^(\d{1,2}):([0-5]\d):([0-5]\d)[,.](\d{1,3})$")


def _meld_seconds(stamp: str) -> float:
    """``HH:MM:SS,mmm`` → seconds; ValueError naming the stamp otherwise."""
    match = _MELD_TIME.match(stamp.strip())
    if match is None:
        raise ValueError(f"time stamp {stamp!r} is not HH:MM:SS,mmm")
    h, m, s, ms = match.groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _repair_c1(text: str) -> str:
    """MELD text holds cp1252 bytes read as latin-1 (``\\x92`` for ’): map them back."""
    out = []
    for ch in text:
        if "\x80" <= ch <= "\x9f":
            try:
                ch = bytes([ord(ch)]).decode("cp1252")
            except UnicodeDecodeError:
                ch = ""  # the five C1 codes cp1252 leaves undefined carry no text
        out.append(ch)
    return "".join(out)


def meld_classes(params: Params) -> tuple[str, ...]:
    """MELD's label_class names for ``dataset.target`` (auto: emotion, or sentiment)."""
    target = params.dataset.target
    if target == "auto":
        target = "sentiment" if params.dataset.task == "regression" else "emotion"
    return MELD_SENTIMENTS if target == "sentiment" else MELD_EMOTIONS


@register("meld", about="MELD: {train,dev,test}_sent_emo.csv + dia<D>_utt<U>.mp4 per split",
        targets=("emotion", "sentiment"), scored=("auto", "sentiment"), classes=meld_classes)
def read_meld(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """MELD: ``{train,dev,test}_sent_emo.csv`` + ``dia{D}_utt{U}.mp4`` per split folder."""
    import pandas as pd

    root = Path(params.dataset.root)
    classes = meld_classes(params)
    by_emotion = classes is MELD_EMOTIONS
    absent = [root / name for name, _ in MELD_SPLITS.values() if not (root / name).is_file()]
    if absent:
        raise IngestError(
            f"{', '.join(map(str, absent))}: MELD label file not found (dataset.root = {root})"
        )
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for split, (csv_name, folder_names) in MELD_SPLITS.items():
        path = root / csv_name
        folder = next((root / f for f in folder_names if (root / f).is_dir()), None)
        if folder is None:
            raise IngestError(
                f"{root}: no clip folder for {csv_name} "
                f"(expected one of {', '.join(folder_names)})"
            )
        if not path.is_file():
            raise IngestError(f"{path}: label file not found (dataset.root = {root})")
        table = read_csv(path, params.ingest.encoding)
        missing = [c for c in MELD_COLUMNS if c not in table.header]
        if missing:
            raise IngestError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(header: {', '.join(table.header)})"
            )
        for first_line, last_line, record in table:
            where = f"{path} line {first_line}"
            dia, utt = cell_text(record.get("Dialogue_ID")), cell_text(record.get("Utterance_ID"))
            # Dialogue ids restart in every split, so the split is part of the video id.
            video_id = f"{split}_dia{dia}"
            clip_id = contracts.clip_id(video_id, f"utt{utt}")
            if not (dia.isdigit() and utt.isdigit()) or None in record:
                reason = (
                    "has more fields than the header"
                    if None in record
                    else f"Dialogue_ID {dia!r} / Utterance_ID {utt!r} must be whole numbers"
                )
                issues.append(Issue(clip_id, "id", f"{where}: {reason}", reason="id"))
                continue
            emotion = cell_text(record.get("Emotion")).lower()
            sentiment = cell_text(record.get("Sentiment")).lower()
            if emotion not in MELD_EMOTIONS or sentiment not in MELD_SENTIMENTS:
                error = (
                    f"{where}: unknown emotion {record.get('Emotion')!r} "
                    f"(expected one of {', '.join(MELD_EMOTIONS)})"
                    if emotion not in MELD_EMOTIONS
                    else f"{where}: unknown sentiment {record.get('Sentiment')!r} "
                    f"(expected one of {', '.join(MELD_SENTIMENTS)})"
                )
                issues.append(Issue(clip_id, "label", error, reason="label"))
                continue
            try:
                start = _meld_seconds(cell_text(record.get("StartTime")))
                end = _meld_seconds(cell_text(record.get("EndTime")))
            except ValueError as err:
                issues.append(Issue(clip_id, "time", f"{where}: {err}", reason="time"))
                continue
            if end <= start:
                error = f"{where}: EndTime {record['EndTime']!r} is not after StartTime"
                issues.append(Issue(clip_id, "time", error, reason="time"))
                continue
            issues += encoding_issues(clip_id, table, first_line, last_line)
            rows.append({
                "clip_id": clip_id,
                "video_id": video_id,
                "split": split,
                # One clip per utterance: the episode times above are not offsets in it.
                "media": folder / f"dia{int(dia)}_utt{int(utt)}.mp4",
                "start": math.nan,
                "end": math.nan,
                "text": _repair_c1(cell_text(record.get("Utterance"))),
                "label": float(MELD_SENTIMENTS.index(sentiment) - 1),
                "label_class": -1,
                "annotation": emotion if by_emotion else sentiment,
                "source_line": first_line,
                "source_file": str(path),
            })
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "source_line", "source_file"])
    frame.attrs.update(source=str(root), classes=classes)
    return frame, issues

