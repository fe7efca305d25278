"""tasks.ingest: MMSA raw layout → manifest.csv + ingest_errors.csv, good and bad input."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import yaml

from config.paths import Paths
from config.schema import Params
from tasks.contracts import INGEST_ERROR_COLUMNS as ERROR_COLUMNS
from tasks.contracts import MANIFEST_COLUMNS, IngestError
from tasks.ingest import build_manifest
from tasks.params import load_params
from tasks.sources import layouts

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["video_id", "clip_id", "text", "label", "annotation", "mode"]


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 2-frame H.264 mp4, written once and copied for every clip."""
    path = tmp_path_factory.mktemp("media") / "tiny.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 90 * i, np.uint8), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _params(tmp_path: Path, root: str = "raw", **ingest: object) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dataset"]["root"] = root
    raw["ingest"].update(ingest)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(tmp_path / "params.yaml")


def _make_raw(
    tmp_path: Path,
    rows: list[list[object]],
    media: bytes,
    header: list[str] = HEADER,
    skip_media: tuple[str, ...] = (),
) -> Path:
    raw = tmp_path / "raw"
    for row in rows:
        video_id, clip = str(row[0]), str(row[1])
        target = raw / "Raw" / video_id / f"{clip}.mp4"
        if f"{video_id}/{clip}" in skip_media or not video_id or not clip:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(media)
    raw.mkdir(exist_ok=True)
    with open(raw / "label.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return raw


def _good_rows() -> list[list[object]]:
    return [
        ["vidA", "1", "i really loved it", 2.4, "Positive", "train"],
        ["vidA", "2", "it was fine", 0.0, "Neutral", "train"],
        ["vidB", "1", "terrible, just terrible", -1.8, "Negative", "valid"],
        ["vidC", "7", "great acting", 1.2, "Positive", "test"],
    ]


def _run(tmp_path: Path, **ingest: object) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    params = _params(tmp_path, **ingest)
    paths = Paths.from_params(params)
    summary = build_manifest(params, paths)
    manifest = pd.read_csv(paths.manifest, keep_default_na=False, na_values=[""])
    errors = pd.read_csv(paths.ingest_errors, keep_default_na=False, dtype=str)
    return summary, manifest, errors


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the stage runs at the repo root; tmp_path plays it here
    return tmp_path


def test_good_dataset(in_tmp: Path, mp4_bytes: bytes) -> None:
    _make_raw(in_tmp, _good_rows(), mp4_bytes)
    summary, manifest, errors = _run(in_tmp)
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert list(errors.columns) == list(ERROR_COLUMNS) and errors.empty
    assert manifest["clip_id"].tolist() == ["vidA$_$1", "vidA$_$2", "vidB$_$1", "vidC$_$7"]
    assert manifest["split"].tolist() == ["train", "train", "valid", "test"]
    assert manifest["media"].tolist()[0] == "raw/Raw/vidA/1.mp4"  # relative to the repo root
    assert manifest["label"].tolist() == [2.4, 0.0, -1.8, 1.2]
    assert manifest["label_class"].tolist() == [2, 1, 0, 2]
    assert manifest[["start", "end"]].isna().all().all()  # whole file
    assert summary["clips"] == 4 and summary["dropped"] == 0
    assert (summary["train_clips"], summary["valid_clips"], summary["test_clips"]) == (2, 1, 1)
    assert {"mmsa", "meld", "iemocap", "folder"} <= set(layouts.names())


def test_sims_columns_kept_and_outside_root(
    tmp_path: Path, mp4_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, repo = tmp_path / "elsewhere", tmp_path / "repo"
    data_dir.mkdir()
    repo.mkdir()
    header = [*HEADER, "label_T", "label_A", "label_V"]
    rows = [
        ["video_0001", "0001", "我很喜欢", 0.6, "Positive", "train", 0.8, 0.4, ""],
        ["video_0001", "0002", "一般", -0.2, "", "val", -0.4, 0.0, 0.2],
    ]
    raw = _make_raw(data_dir, rows, mp4_bytes, header=header)
    monkeypatch.chdir(repo)
    params = _params(repo, root=str(raw))
    params = params.model_copy(
        update={"dataset": params.dataset.model_copy(update={"label_range": (-1.0, 1.0)})}
    )
    paths = Paths.from_params(params)
    summary = build_manifest(params, paths)
    manifest = pd.read_csv(paths.manifest, dtype={"clip_id": str})
    assert list(manifest.columns) == [*MANIFEST_COLUMNS, "label_T", "label_A", "label_V"]
    assert manifest["clip_id"].tolist() == ["video_0001$_$0001", "video_0001$_$0002"]
    assert manifest["text"].tolist() == ["我很喜欢", "一般"]
    assert manifest["split"].tolist() == ["train", "valid"]
    assert manifest["label_T"].tolist() == [0.8, -0.4]
    assert math.isnan(manifest["label_V"][0])
    # annotation missing → the label's polarity
    assert manifest["annotation"].tolist() == ["Positive", "Negative"]
    media = Path(manifest["media"][0])
    assert media.is_absolute() and media == (raw / "Raw/video_0001/0001.mp4").resolve()
    assert summary["extra_columns"] == ["label_T", "label_A", "label_V"]


def test_bad_rows_reported_and_dropped(in_tmp: Path, mp4_bytes: bytes) -> None:
    rows = [
        *_good_rows(),
        ["vidA", "1", "again", 1.0, "Positive", "train"],  # duplicate of line 2
        ["vidD", "1", "gone", 1.0, "Positive", "train"],  # media missing
        ["vidD", "2", "empty file", 1.0, "Positive", "train"],  # media empty
        ["vidE", "1", "too happy", 3.5, "Positive", "train"],  # out of range
        ["vidE", "2", "no label", "", "Positive", "train"],  # missing label
        ["vidE", "3", "nan label", "nan", "Positive", "train"],
        ["vidE", "4", "odd split", 1.0, "Positive", "holdout"],
        ["vidE", "5", "", -0.5, "Negative", "dev"],  # empty transcript: kept
        ["", "6", "no video id", 0.5, "Positive", "train"],
        ["vidF", "1", "meh", 0.3, "Mixed", "TEST"],  # unknown annotation: kept, class -1
    ]
    raw = _make_raw(in_tmp, rows, mp4_bytes, skip_media=("vidD/1",))
    (raw / "Raw/vidD/2.mp4").write_bytes(b"")
    summary, manifest, errors = _run(in_tmp)
    assert manifest["clip_id"].tolist() == [
        "vidA$_$1",
        "vidA$_$2",
        "vidB$_$1",
        "vidC$_$7",
        "vidE$_$5",
        "vidF$_$1",
    ]
    assert manifest.loc[4, "split"] == "valid" and pd.isna(manifest.loc[4, "text"])
    assert manifest.loc[5, ["split", "label_class", "annotation"]].tolist() == [
        "test",
        -1,
        "Mixed",
    ]
    by_clip = dict(zip(errors["clip_id"], errors["error"]))
    assert "line 6: duplicate clip id (first at line 2); clip dropped" in by_clip["vidA$_$1"]
    assert "media file raw/Raw/vidD/1.mp4 not found" in by_clip["vidD$_$1"]
    assert "vidD/2.mp4 is empty" in by_clip["vidD$_$2"]
    assert "label 3.5 outside [-3.0, 3.0]" in by_clip["vidE$_$1"]
    assert "missing or not a number" in by_clip["vidE$_$2"]
    assert "missing or not a number" in by_clip["vidE$_$3"]
    assert "unknown mode 'holdout'" in by_clip["vidE$_$4"]
    assert by_clip["vidE$_$5"].endswith("empty transcript; clip kept")
    assert "video_id '' is empty" in by_clip["$_$6"]
    assert all(str(ROOT) not in e for e in errors["error"])
    assert set(errors["stage"]) == {"ingest"}
    assert errors.set_index("clip_id").loc["vidD$_$1", "modality"] == "media"
    assert "unknown annotation 'Mixed'" in by_clip["vidF$_$1"]
    assert summary["rows"] == 14 and summary["clips"] == 6
    assert summary["dropped"] == 8 and summary["warnings"] == 2
    assert (summary["dropped_label"], summary["dropped_media"]) == (3, 2)
    assert (summary["dropped_duplicate"], summary["dropped_split"], summary["dropped_id"]) == (
        1,
        1,
        1,
    )


def test_on_duplicate_fail_and_fail_fast(in_tmp: Path, mp4_bytes: bytes) -> None:
    rows = [*_good_rows(), ["vidB", "1", "dup", 0.1, "Positive", "test"]]
    _make_raw(in_tmp, rows, mp4_bytes)
    with pytest.raises(IngestError, match=r"duplicate clip id.*line 6.*first at line 4"):
        _run(in_tmp, on_duplicate="fail")
    with pytest.raises(IngestError, match=r"fail_fast.*1 bad row"):
        _run(in_tmp, fail_fast=True)
    assert not (in_tmp / "data").exists()  # nothing valid-looking written on failure


def test_non_utf8_line_kept_and_reported(in_tmp: Path, mp4_bytes: bytes) -> None:
    raw = _make_raw(in_tmp, _good_rows(), mp4_bytes)
    blob = (raw / "label.csv").read_bytes().replace(b"great acting", b"gr\xe9at acting")
    (raw / "label.csv").write_bytes(b"\xef\xbb\xbf" + blob)  # and a BOM before the header
    summary, manifest, errors = _run(in_tmp)
    assert summary["clips"] == 4
    assert manifest.loc[3, "text"] == "gr\ufffdat acting"
    assert errors["clip_id"].tolist() == ["vidC$_$7"]
    assert errors.loc[0, "modality"] == "text"
    message = errors.loc[0, "error"]
    assert "label.csv line 5: not valid utf-8 (byte 0xe9 at column 10)" in message
    assert message.endswith("clip kept")
    # the right codec reads the same file cleanly
    (raw / "label.csv").write_bytes(blob.replace(b"\xef\xbb\xbf", b""))
    _, manifest, errors = _run(in_tmp, encoding="latin-1")
    assert manifest.loc[3, "text"] == "gréat acting" and errors.empty


def test_unreadable_dataset(in_tmp: Path, mp4_bytes: bytes) -> None:
    with pytest.raises(IngestError, match=r"raw/label.csv: label file not found"):
        _run(in_tmp)
    _make_raw(in_tmp, [r[:5] for r in _good_rows()], mp4_bytes, header=HEADER[:5])
    with pytest.raises(IngestError, match=r"label.csv: missing column\(s\) mode"):
        _run(in_tmp)
    rows = [[*r[:3], 9.0, *r[4:]] for r in _good_rows()]
    _make_raw(in_tmp, rows, mp4_bytes)
    with pytest.raises(IngestError, match=r"no usable clip among 4 row\(s\) \(label: 4\)"):
        _run(in_tmp)
    _make_raw(in_tmp, [], mp4_bytes)
    with pytest.raises(IngestError, match=r"no usable clip among 0 row\(s\)"):
        _run(in_tmp)
