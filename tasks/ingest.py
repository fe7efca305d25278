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
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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


# --- MELD ----------------------------------------------------------------------------------

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


def _read_csv_lines(path: Path, params: Params) -> tuple[csv.DictReader, dict[int, str]]:
    """A DictReader over the decoded file (BOM stripped) and the lines that did not decode."""
    encoding = params.ingest.encoding
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    lines, bad = _decode_lines(path.read_bytes(), encoding)
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    reader.fieldnames = [c.strip() for c in (reader.fieldnames or [])]
    return reader, bad


def _encoding_issues(
    clip_id: str, path: Path, lines: range, bad: dict[int, str], params: Params
) -> list[Issue]:
    return [
        Issue(
            clip_id,
            "text",
            f"{path} line {n}: not valid {params.ingest.encoding} ({bad[n]}), "
            "decoded with U+FFFD replacement",
            drop=False,
            reason="encoding",
        )
        for n in lines
        if n in bad
    ]


def meld_classes(params: Params) -> tuple[str, ...]:
    """MELD's label_class names for ``dataset.target`` (auto: emotion, or sentiment)."""
    target = params.dataset.target
    if target == "auto":
        target = "sentiment" if params.dataset.task == "regression" else "emotion"
    return MELD_SENTIMENTS if target == "sentiment" else MELD_EMOTIONS


def read_meld(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """MELD: ``{train,dev,test}_sent_emo.csv`` + ``dia{D}_utt{U}.mp4`` per split folder."""
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
        reader, bad_lines = _read_csv_lines(path, params)
        missing = [c for c in MELD_COLUMNS if c not in reader.fieldnames]
        if missing:
            raise IngestError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(header: {', '.join(reader.fieldnames)})"
            )
        previous_end = 1
        for record in reader:
            first_line, previous_end = previous_end + 1, reader.line_num
            where = f"{path} line {first_line}"
            dia, utt = _text(record.get("Dialogue_ID")), _text(record.get("Utterance_ID"))
            # Dialogue ids restart in every split, so the split is part of the video id.
            video_id = f"{split}_dia{dia}"
            clip_id = f"{video_id}$_$utt{utt}"
            if not (dia.isdigit() and utt.isdigit()) or None in record:
                reason = (
                    "has more fields than the header"
                    if None in record
                    else f"Dialogue_ID {dia!r} / Utterance_ID {utt!r} must be whole numbers"
                )
                issues.append(Issue(clip_id, "id", f"{where}: {reason}", reason="id"))
                continue
            emotion = _text(record.get("Emotion")).lower()
            sentiment = _text(record.get("Sentiment")).lower()
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
                start = _meld_seconds(_text(record.get("StartTime")))
                end = _meld_seconds(_text(record.get("EndTime")))
            except ValueError as err:
                issues.append(Issue(clip_id, "time", f"{where}: {err}", reason="time"))
                continue
            if end <= start:
                error = f"{where}: EndTime {record['EndTime']!r} is not after StartTime"
                issues.append(Issue(clip_id, "time", error, reason="time"))
                continue
            issues += _encoding_issues(
                clip_id, path, range(first_line, previous_end + 1), bad_lines, params
            )
            rows.append({
                "clip_id": clip_id,
                "video_id": video_id,
                "split": split,
                # One clip per utterance: the episode times above are not offsets in it.
                "media": folder / f"dia{int(dia)}_utt{int(utt)}.mp4",
                "start": math.nan,
                "end": math.nan,
                "text": _repair_c1(_text(record.get("Utterance"))),
                "label": float(MELD_SENTIMENTS.index(sentiment) - 1),
                "label_class": -1,
                "annotation": emotion if by_emotion else sentiment,
                "source_line": first_line,
                "source_file": str(path),
            })
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "source_line", "source_file"])
    frame.attrs.update(source=str(root), classes=classes)
    return frame, issues


# --- IEMOCAP -------------------------------------------------------------------------------

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
    lines, bad = _decode_lines(path.read_bytes(), params.ingest.encoding)
    return [line.rstrip("\r\n") for line in lines], bad


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


def read_iemocap(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """IEMOCAP: EmoEvaluation labels + transcriptions; the dialog .avi cut by turn times."""
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
                    issues.append(Issue(f"{dialog}$_${utt}", "id", error, reason="format"))
                    continue
                clip_id = f"{dialog}$_${match['utt']}"
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
                issues += _encoding_issues(clip_id, path, range(number, number + 1),
                                           bad_lines, params)
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


# --- a user's own folder -------------------------------------------------------------------

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


def read_folder(params: Params) -> tuple[pd.DataFrame, list[Issue]]:
    """Own media: ``clips.csv`` (clip_id, path[, text, label, split, ...]) in dataset.root."""
    root = Path(params.dataset.root)
    # dataset.root may name the CSV itself; media paths are relative to its folder.
    path = root if root.suffix.lower() == ".csv" else root / FOLDER_CSV
    folder = path.parent
    if not path.is_file():
        raise IngestError(f"{path}: clip list not found (dataset.root = {root})")
    reader, bad_lines = _read_csv_lines(path, params)
    header = list(reader.fieldnames)
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
    previous_end = 1
    for record in reader:
        first_line, previous_end = previous_end + 1, reader.line_num
        where = f"{path} line {first_line}"
        clip_id, media = _text(record.get("clip_id")), _text(record.get("path"))
        if not clip_id or "/" in clip_id or not media or None in record:
            reason = (
                "has more fields than the header"
                if None in record
                else f"clip_id {clip_id!r} must be non-empty and '/'-free, "
                f"path {media!r} non-empty"
            )
            issues.append(Issue(clip_id, "id", f"{where}: {reason}", reason="id"))
            continue
        label_text = _text(record.get("label"))
        label = _float_or_nan(label_text)
        if label_text and not math.isfinite(label):
            error = f"{where}: label {label_text!r} is not a number"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        window = [_text(record.get(k)) for k in ("start", "end")]
        times = [_float_or_nan(t) for t in window]
        if any(t and not math.isfinite(x) for t, x in zip(window, times, strict=True)) or (
            all(math.isfinite(x) for x in times) and not 0 <= times[0] < times[1]
        ):
            error = f"{where}: bad time window start {window[0]!r} end {window[1]!r} (seconds)"
            issues.append(Issue(clip_id, "time", error, reason="time"))
            continue
        issues += _encoding_issues(
            clip_id, path, range(first_line, previous_end + 1), bad_lines, params
        )
        rows.append({
            "clip_id": clip_id,
            "video_id": _text(record.get("video_id")) or clip_id,
            "split": _text(record.get("split")),
            "media": folder / media,
            "start": times[0],
            "end": times[1],
            "text": _text(record.get("text")),
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


READERS: dict[str, Reader] = {
    "mmsa": read_mmsa,
    "meld": read_meld,
    "iemocap": read_iemocap,
    "folder": read_folder,
}


def layout_classes(params: Params) -> tuple[str, ...] | None:
    """The fixed class names of a classification layout (None: MMSA polarity)."""
    if params.dataset.layout == "meld":
        return meld_classes(params)
    if params.dataset.layout == "iemocap":
        return IEMOCAP_4CLASS if iemocap_setup(params) == "4class" else IEMOCAP_6CLASS
    return None


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
    """Checks shared by every layout: split, label, duplicates, media; return kept rows.

    A reader's ``frame.attrs`` may set ``classes`` (label_class = index of the annotation
    among these names; an annotation outside them drops the row) and ``label_optional``
    (a missing label is kept as NaN instead of dropping the row).
    """
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
        if clip_id in seen:
            error = f"{where}: duplicate clip id (first at {seen[clip_id]})"
            issues.append(Issue(clip_id, "id", error, reason="duplicate"))
            continue
        seen[clip_id] = where.removeprefix(f"{source} ") if file == source else where
        split = SPLITS.get(str(row["split"]).strip().lower())
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
        if math.isfinite(label) and not low <= label <= high:
            error = f"{where}: label {label} outside [{low}, {high}]"
            issues.append(Issue(clip_id, "label", error, reason="label"))
            continue
        annotation = _text(row["annotation"])
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
        names = classes if classes is not None else MMSA_CLASSES
        if classes is None:
            # The class follows the annotation; a row without one gets its label's polarity
            # (none at all when the label is unknown too: label_class -1, no warning).
            if not annotation and math.isfinite(label):
                annotation = _polarity(label)
            matches = [k for k, name in enumerate(names) if name.lower() == annotation.lower()]
            if annotation and not matches:
                error = f"{where}: unknown annotation {annotation!r}, label_class -1"
                issues.append(Issue(clip_id, "label", error, drop=False, reason="annotation"))
        if not _text(row["text"]):
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


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")


def build_manifest(params: Params, paths: Paths) -> dict[str, Any]:
    """Read the raw layout, check every row, write manifest + errors; return a summary."""
    if params.dataset.source == "csd":
        from tasks import sources  # imports this module: load it only when asked for

        return sources.csd_manifest(params, paths)
    if params.dataset.source == "mmsa_pkl":
        from tasks import mmsa_pkl  # ids, labels and splits come from the named pickle

        return mmsa_pkl.build_manifest_from_pickle(params, paths)
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
