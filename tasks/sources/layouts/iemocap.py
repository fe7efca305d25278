"""Raw layout ``iemocap``: EmoEvaluation labels + transcriptions; dialog videos cut by turn."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.schema import Params
from tasks import contracts
from tasks.contracts import MANIFEST_COLUMNS, IngestError, Issue
from tasks.sources.layouts import register
from tasks.userfiles import decoding_problem, read_text_lines

if TYPE_CHECKING:  # pandas is imported where a frame is made: validating params needs none
    import pandas as pd

IEMOCAP_4CLASS: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
IEMOCAP_6CLASS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "excited", "frustrated")
# EmoEvaluation codes → class name per setup; a code absent from a map is dropped.
IEMOCAP_MAPS: dict[str, dict[str, str]] = {
    "4class": {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"},
    "6class": {
        "neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry",
        "exc": "excited", "fru": "frustrated",
    },
}
IEMOCAP_CODES: frozenset[str] = frozenset(
    {"neu", "hap", "exc", "ang", "sad", "fru", "xxx", "oth", "fea", "sur", "dis"}
)
IEMOCAP_SESSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
VAD_COLUMNS: tuple[str, ...] = ("valence", "arousal", "dominance")
_NUM = r"[-+]?\d+(?:\.\d*)?"
_EMO_LINE = re.compile(
    rf"^\[\s*(?P<start>\S+)\s*-\s*(?P<end>\S+)\s*\]\t(?P<utt>\S+)\t(?P<label>\S+)\t"
    rf"\[\s*(?P<v>{_NUM})\s*,\s*(?P<a>{_NUM})\s*,\s*(?P<d>{_NUM})\s*\]\s*$"
)
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")


def iemocap_setup(params: Params) -> str:
    """``4class`` (default) or ``6class``."""
    return "6class" if params.dataset.target == "6class" else "4class"


def iemocap_split(session: int) -> str:
    """Sessions 1–3 train, 4 valid (unseen speakers, as test), 5 test."""
    return {4: "valid", 5: "test"}.get(session, "train")


def _read_text(path: Path, params: Params) -> tuple[list[str], dict[int, str]]:
    return read_text_lines(path, params.ingest.encoding)


def _iemocap_transcripts(
    folder: Path, dialog: str, params: Params
) -> tuple[dict[str, str], Path]:
    """``utterance_id → text`` of one dialog (empty when its transcription file is absent)."""
    path = folder / f"{dialog}.txt"
    if not path.is_file():
        return {}, path
    lines, _ = _read_text(path, params)
    texts = {}
    for line in lines:
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match:  # speaker-less lines ("M: ...") belong to no evaluated utterance
            texts[match["utt"]] = match["text"].strip()
    return texts, path


def iemocap_classes(params: Params) -> tuple[str, ...]:
    """The class names of the setup ``dataset.target`` picks."""
    return IEMOCAP_4CLASS if iemocap_setup(params) == "4class" else IEMOCAP_6CLASS


@register("iemocap", about="IEMOCAP: EmoEvaluation + transcriptions; dialog videos cut by turn",
        targets=("4class", "6class"), scored=(), classes=iemocap_classes)
def read_iemocap(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """IEMOCAP: EmoEvaluation labels + transcriptions; the dialog .avi cut by turn times."""
    import pandas as pd

    root = Path(params.dataset.root)
    setup = iemocap_setup(params)
    mapping = IEMOCAP_MAPS[setup]
    sessions = [n for n in IEMOCAP_SESSIONS if (root / f"Session{n}").is_dir()]
    if not sessions:
        raise IngestError(f"{root}: no Session1..Session5 folder (dataset.root = {root})")
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    for n in sessions:
        dialog_dir = root / f"Session{n}" / "dialog"
        eval_dir = dialog_dir / "EmoEvaluation"
        files = sorted(p for p in eval_dir.glob("*.txt") if not p.name.startswith("._"))
        if not files:
            raise IngestError(f"{eval_dir}: no EmoEvaluation *.txt file")
        for path in files:
            dialog = path.stem
            texts, transcript = _iemocap_transcripts(dialog_dir / "transcriptions", dialog, params)
            media = dialog_dir / "avi" / "DivX" / f"{dialog}.avi"
            lines, bad_lines = _read_text(path, params)
            for number, line in enumerate(lines, start=1):
                if not line.startswith("["):
                    continue  # header, blank and per-evaluator lines ("C-E1: ...")
                where = f"{path} line {number}"
                match = _EMO_LINE.match(line)
                if match is None:
                    utt = line.split("\t")[1] if line.count("\t") >= 1 else f"line{number}"
                    error = (
                        f"{where}: expected '[start - end]<TAB>utterance<TAB>label"
                        f"<TAB>[v, a, d]', got {line[:80]!r}"
                    )
                    bad = contracts.clip_id(dialog, utt)
                    issues.append(Issue(bad, "id", error, reason="format"))
                    continue
                clip_id = contracts.clip_id(dialog, match["utt"])
                code = match["label"].lower()
                if code not in IEMOCAP_CODES:
                    error = (
                        f"{where}: unknown label {match['label']!r} "
                        f"(expected one of {', '.join(sorted(IEMOCAP_CODES))})"
                    )
                    issues.append(Issue(clip_id, "label", error, reason="label"))
                    continue
                if code not in mapping:
                    error = f"{where}: label {code!r} is not a class of the {setup} setup"
                    issues.append(Issue(clip_id, "label", error, reason="label"))
                    continue
                try:
                    start, end = float(match["start"]), float(match["end"])
                    if not (math.isfinite(start) and math.isfinite(end)):
                        raise ValueError
                except ValueError:
                    error = f"{where}: time stamps [{match['start']} - {match['end']}] not numbers"
                    issues.append(Issue(clip_id, "time", error, reason="time"))
                    continue
                if start < 0 or end <= start:
                    error = f"{where}: empty or negative time window [{start} - {end}]"
                    issues.append(Issue(clip_id, "time", error, reason="time"))
                    continue
                if number in bad_lines:
                    issues.append(Issue(clip_id, "text", decoding_problem(
                        path, number, bad_lines[number], params.ingest.encoding),
                        drop=False, reason="encoding"))
                if match["utt"] not in texts:
                    error = f"{transcript}: no transcript line for {match['utt']}"
                    issues.append(Issue(clip_id, "text", error, drop=False, reason="text"))
                rows.append({
                    "clip_id": clip_id,
                    "video_id": dialog,
                    "split": iemocap_split(n),
                    "media": media,
                    "start": start,
                    "end": end,
                    "text": texts.get(match["utt"], ""),
                    "label": math.nan,
                    "label_class": -1,
                    "annotation": mapping[code],
                    "valence": float(match["v"]),
                    "arousal": float(match["a"]),
                    "dominance": float(match["d"]),
                    "source_line": number,
                    "source_file": str(path),
                })
    columns = [*MANIFEST_COLUMNS, *VAD_COLUMNS, "source_line", "source_file"]
    frame = pd.DataFrame(rows, columns=columns)
    classes = IEMOCAP_4CLASS if setup == "4class" else IEMOCAP_6CLASS
    frame.attrs.update(source=str(root), classes=classes, label_optional=True)
    return frame, issues

