"""tasks/contracts.py: the one definition of splits, classes, clip ids, manifest and reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks import contracts
from tasks.contracts import (
    MANIFEST_COLUMNS,
    POLARITY,
    SPLITS,
    Issue,
    ManifestError,
    read_manifest,
    write_manifest,
    write_report,
)
from tasks.metrics import polarity


def _manifest(**changes: object) -> pd.DataFrame:
    rows = [
        {"clip_id": "v$_$0", "video_id": "v", "split": "train", "media": "a.mp4", "start": "",
         "end": "", "text": "good", "label": 1.5, "label_class": 2, "annotation": "Positive"},
        {"clip_id": "v$_$1", "video_id": "v", "split": "test", "media": "b.mp4", "start": "",
         "end": "", "text": "", "label": float("nan"), "label_class": -1, "annotation": ""},
    ]
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    for key, value in changes.items():
        frame[key] = value
    return frame


def test_splits_polarity_and_ids() -> None:
    assert SPLITS == ("train", "valid", "test")
    assert [contracts.split_name(s) for s in ("dev", " VAL ", "validation", "Test")] == [
        "valid", "valid", "valid", "test"]
    assert contracts.split_name("holdout") is None
    assert [polarity(x) for x in (-0.1, 0.0, 2)] == list(POLARITY)
    cid = contracts.clip_id("video_1", 3)
    assert cid == "video_1$_$3" and contracts.video_of(cid) == "video_1"
    assert contracts.clip_part(cid) == "3" and contracts.valid_clip_id(cid)
    assert not contracts.valid_clip_id("a/b") and not contracts.valid_clip_id("")


def test_manifest_round_trip_and_label_types(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    write_manifest(path, _manifest())
    assert path.read_bytes().count(b"\r") == 0
    text = read_manifest(path)
    assert text["text"].tolist() == ["good", ""] and text["label"].tolist() == ["1.5", ""]
    typed = read_manifest(path, labels=True)
    assert typed["label"].dtype == "float32" and pd.isna(typed["label"].iloc[1])
    assert typed["label_class"].tolist() == [2, -1]
    chunks = list(contracts.manifest_chunks(path, ("clip_id", "split", "nope"), chunk_rows=1))
    assert [list(c.columns) for c in chunks] == [["clip_id", "split"]] * 2


def test_bad_manifests_name_file_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    with pytest.raises(FileNotFoundError, match="manifest not found .*ingest"):
        read_manifest(path)
    write_manifest(path, _manifest(clip_id="same"))
    with pytest.raises(ManifestError, match="duplicate clip_id 'same'"):
        read_manifest(path)
    write_manifest(path, _manifest(split="holdout"))
    with pytest.raises(ManifestError, match=r"split outside \('train', 'valid', 'test'\)"):
        read_manifest(path)
    write_manifest(path, _manifest().drop(columns=["media"]))
    with pytest.raises(ManifestError, match="manifest.csv: manifest has no 'media' column"):
        read_manifest(path)


def test_reports_spell_the_outcome(tmp_path: Path) -> None:
    issue = Issue("v$_$0", "label", "label.csv line 3: label 9 outside [-3, 3]")
    kept = Issue("v$_$1", "text", "empty transcript", drop=False)
    path = tmp_path / "ingest_errors.csv"
    frame = write_report(path, [issue.row(), kept.row()], contracts.INGEST_ERROR_COLUMNS)
    assert frame["error"].str.endswith(("; clip dropped", "; clip kept")).all()
    assert pd.read_csv(path).columns.tolist() == list(contracts.INGEST_ERROR_COLUMNS)
    empty = write_report(tmp_path / "e.csv", [], contracts.EXTRACT_ERROR_COLUMNS)
    assert empty.empty and (tmp_path / "e.csv").read_text() == ",".join(
        contracts.EXTRACT_ERROR_COLUMNS) + "\n"
