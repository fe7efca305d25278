"""Raw layouts (tasks/sources): MELD, IEMOCAP and own folder → manifest.csv, good and bad input."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pandas as pd
import pytest

from config.errors import ParamsError
from config.paths import Paths
from config.schema import Params
from tasks import sources
from tasks.contracts import MANIFEST_COLUMNS, IngestError
from tasks.ingest import build_manifest
from tasks.params import load_params
from tasks.sources.layouts.folder import folder_splits
from tasks.sources.layouts.iemocap import IEMOCAP_4CLASS, IEMOCAP_6CLASS, VAD_COLUMNS
from tasks.sources.layouts.meld import MELD_EMOTIONS, MELD_SENTIMENTS
from tests.tasks.features.test_media import make_mp4

ROOT = Path(__file__).resolve().parents[3]
MELD_HEADER = [
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real tiny media files (1 s, 64×64): an H.264/AAC mp4, an MPEG-4/PCM avi, a wav."""
    d = tmp_path_factory.mktemp("media")
    mp4 = make_mp4(d / "clip.mp4")
    avi, wav = d / "dialog.avi", d / "utt.wav"
    rate, t = 16000, np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with av.open(str(avi), "w", format="avi") as box:
        vs = box.add_stream("mpeg4", rate=8)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        sound = box.add_stream("pcm_s16le", rate=rate, layout="mono")
        for i in range(0, len(tone), 1600):
            frame = av.AudioFrame.from_ndarray(tone[None, i : i + 1600], "fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            box.mux(sound.encode(frame))
        box.mux(sound.encode(None))
        for i in range(16):  # 2 s: IEMOCAP cuts turns out of one dialog video
            img = np.full((64, 64, 3), 40 + 10 * i, np.uint8)
            box.mux(vs.encode(av.VideoFrame.from_ndarray(img, "rgb24")))
        box.mux(vs.encode(None))
    with av.open(str(wav), "w", format="wav") as box:
        sound = box.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone[None, :rate], "fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        box.mux(sound.encode(frame))
        box.mux(sound.encode(None))
    return {"mp4": mp4.read_bytes(), "avi": avi.read_bytes(), "wav": wav.read_bytes()}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # ingest resolves relative paths against the repo root
    return tmp_path


def _params(tmp_path: Path, layout: str, **dataset: object) -> Params:
    overrides = {"dataset.name": "t", "dataset.root": "raw", "dataset.layout": layout}
    overrides |= {f"dataset.{k}": v for k, v in dataset.items()}
    return load_params(ROOT / "params.yaml", overrides=overrides)


def _run(tmp_path: Path, params: Params) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    paths = Paths.from_params(params, base=tmp_path)
    summary = build_manifest(params, paths)
    empty_is_nan = dict.fromkeys(("label", "start", "end"), [""])
    manifest = pd.read_csv(paths.manifest, keep_default_na=False, na_values=empty_is_nan)
    errors = pd.read_csv(paths.ingest_errors, keep_default_na=False)
    return summary, manifest, errors


# --- MELD ----------------------------------------------------------------------------------


def _meld_row(
    n: int, text: str, emotion: str, sentiment: str, dia: int, utt: int,
    start: str = "00:16:16,059", end: str = "00:16:21,731",
) -> list[object]:
    return [n, text, "Chandler", emotion, sentiment, dia, utt, 8, 21, start, end]


def _meld_rows() -> dict[str, list[list[object]]]:
    return {
        "train": [
            # \x92 is cp1252's right quote read as latin-1, as in the official CSVs.
            _meld_row(1, "I don\x92t know.", "neutral", "neutral", 0, 0),
            _meld_row(2, "Oh my God!", "surprise", "positive", 0, 1),
            _meld_row(3, "Stop it.", "anger", "negative", 1, 0),
            _meld_row(4, "That's great.", "joy", "positive", 1, 1),
        ],
        "dev": [
            _meld_row(1, "Hey.", "neutral", "neutral", 0, 0),
            _meld_row(2, "No way.", "disgust", "negative", 0, 1),
        ],
        "test": [
            _meld_row(1, "Really?", "surprise", "negative", 0, 0),
            _meld_row(2, "Sure.", "sadness", "negative", 2, 3),
        ],
    }


def _make_meld(
    tmp_path: Path,
    rows: dict[str, list[list[object]]],
    mp4: bytes,
    header: list[str] = MELD_HEADER,
    skip: tuple[str, ...] = (),
) -> Path:
    """The official MELD.Raw layout; the dev/test folders use the plain names."""
    root = tmp_path / "raw"
    folders = {"train": "train_splits", "dev": "dev", "test": "output_repeated_splits_test"}
    for split, split_rows in rows.items():
        folder = root / folders[split]
        folder.mkdir(parents=True)
        with open(root / f"{split}_sent_emo.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(split_rows)
        for row in split_rows:
            name = f"dia{row[5]}_utt{row[6]}.mp4"
            if f"{split}/{name}" not in skip:
                (folder / name).write_bytes(mp4)
    return root


def test_meld_emotion_manifest(in_tmp: Path, media: dict[str, bytes]) -> None:
    _make_meld(in_tmp, _meld_rows(), media["mp4"])
    params = _params(in_tmp, "meld", task="classification")
    summary, manifest, errors = _run(in_tmp, params)
    assert list(manifest.columns) == list(MANIFEST_COLUMNS) and errors.empty
    assert summary["clips"] == 8
    assert (summary["train_clips"], summary["valid_clips"], summary["test_clips"]) == (4, 2, 2)
    first = manifest.iloc[0]
    assert first["clip_id"] == "train_dia0$_$utt0" and first["video_id"] == "train_dia0"
    assert first["media"] == "raw/train_splits/dia0_utt0.mp4"
    assert first["text"] == "I don\u2019t know."  # C1 mojibake repaired
    assert manifest["clip_id"].is_unique  # dialogue ids restart per split
    assert manifest.loc[4, "media"] == "raw/dev/dia0_utt0.mp4"
    assert manifest.loc[7, "media"] == "raw/output_repeated_splits_test/dia2_utt3.mp4"
    emotions = ["neutral", "surprise", "anger", "joy", "neutral", "disgust", "surprise", "sadness"]
    assert manifest["annotation"].tolist() == emotions
    assert manifest["label_class"].tolist() == [MELD_EMOTIONS.index(e) for e in emotions]
    # label = sentiment as -1/0/1 whatever the target
    assert manifest["label"].tolist() == [0.0, 1.0, -1.0, 1.0, 0.0, -1.0, -1.0, -1.0]
    assert manifest[["start", "end"]].isna().all().all()
    assert sources.classes(params) == MELD_EMOTIONS


def test_meld_sentiment_target(in_tmp: Path, media: dict[str, bytes]) -> None:
    _make_meld(in_tmp, _meld_rows(), media["mp4"])
    for params in (
        _params(in_tmp, "meld", task="classification", target="sentiment"),
        _params(in_tmp, "meld"),  # regression: auto means sentiment
    ):
        _, manifest, _ = _run(in_tmp, params)
        assert manifest["annotation"].tolist()[:3] == ["neutral", "positive", "negative"]
        assert manifest["label_class"].tolist()[:3] == [1, 2, 0]
        assert sources.classes(params) == MELD_SENTIMENTS


def test_meld_bad_rows_name_file_and_line(in_tmp: Path, media: dict[str, bytes]) -> None:
    rows = _meld_rows()
    rows["train"][1] = _meld_row(2, "Oh my God!", "amused", "positive", 0, 1)
    rows["train"][2] = _meld_row(3, "Stop it.", "anger", "negative", 1, 0, start="0:16:16")
    rows["dev"][1] = _meld_row(2, "No way.", "disgust", "negative", 0, 1, end="00:00:01,000")
    rows["test"].append(_meld_row(3, "Bye.", "joy", "positive", 3, 0))
    _make_meld(in_tmp, rows, media["mp4"], skip=("test/dia3_utt0.mp4",))
    summary, manifest, errors = _run(in_tmp, _params(in_tmp, "meld", task="classification"))
    assert summary["clips"] == 5 and summary["dropped"] == 4
    by_clip = dict(zip(errors["clip_id"], errors["error"], strict=True))
    assert by_clip["train_dia0$_$utt1"].startswith("raw/train_sent_emo.csv line 3: unknown emot")
    assert "'amused'" in by_clip["train_dia0$_$utt1"]
    assert "line 4: time stamp '0:16:16' is not HH:MM:SS,mmm" in by_clip["train_dia1$_$utt0"]
    assert "dev_sent_emo.csv line 3: EndTime" in by_clip["valid_dia0$_$utt1"]
    missing = by_clip["test_dia3$_$utt0"]
    assert "test_sent_emo.csv line 4: media file" in missing
    assert "dia3_utt0.mp4 not found" in missing
    assert all(e.endswith("; clip dropped") for e in errors["error"])
    assert not set(by_clip) & set(manifest["clip_id"])


def test_meld_missing_column_or_file(in_tmp: Path, media: dict[str, bytes]) -> None:
    header = [c if c != "Emotion" else "Emo" for c in MELD_HEADER]
    root = _make_meld(in_tmp, _meld_rows(), media["mp4"], header=header)
    with pytest.raises(IngestError, match=r"train_sent_emo.csv: missing column\(s\) Emotion"):
        _run(in_tmp, _params(in_tmp, "meld", task="classification"))
    (root / "test_sent_emo.csv").unlink()
    with pytest.raises(IngestError, match="test_sent_emo.csv: MELD label file not found"):
        _run(in_tmp, _params(in_tmp, "meld", task="classification"))


def test_meld_cp1252_bytes_are_kept_and_reported(in_tmp: Path, media: dict[str, bytes]) -> None:
    root = _make_meld(in_tmp, _meld_rows(), media["mp4"])
    path = root / "train_sent_emo.csv"
    path.write_bytes(path.read_bytes().replace(b"Stop it.", b"Stop it\x85"))
    _, manifest, errors = _run(in_tmp, _params(in_tmp, "meld", task="classification"))
    assert len(manifest) == 8 and len(errors) == 1
    assert errors["error"][0].startswith("raw/train_sent_emo.csv line 4: not valid utf-8")
    assert errors["error"][0].endswith("; clip kept")


# --- IEMOCAP -------------------------------------------------------------------------------

EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _make_iemocap(
    tmp_path: Path, media: dict[str, bytes], turns: dict[int, list[str]], skip_avi: int = 0
) -> Path:
    """One dialog per session; ``turns`` = EmoEvaluation lines of each session's dialog."""
    root = tmp_path / "raw"
    for n, lines in turns.items():
        dialog = f"Ses0{n}F_impro01"
        base = root / f"Session{n}" / "dialog"
        for sub in ("EmoEvaluation/Categorical", "transcriptions", "avi/DivX"):
            (base / sub).mkdir(parents=True)
        body = EMO_HEADER
        transcript = []
        for line in lines:
            body += line + "\nC-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
            utt = line.split("\t")[1] if "\t" in line else ""
            if utt:
                transcript.append(f"{utt} [000.5000-001.2000]: Words of {utt[-4:]}.")
                wav = root / f"Session{n}" / "sentences" / "wav" / dialog / f"{utt}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                wav.write_bytes(media["wav"])
        transcript.append("M: [LAUGHTER]")  # a turn with no id: not an evaluated utterance
        (base / "EmoEvaluation" / f"{dialog}.txt").write_text(body)
        (base / "EmoEvaluation" / "Categorical" / f"{dialog}_e1_cat.txt").write_text("x\n")
        (base / "transcriptions" / f"{dialog}.txt").write_text("\n".join(transcript) + "\n")
        if n != skip_avi:
            (base / "avi" / "DivX" / f"{dialog}.avi").write_bytes(media["avi"])
    return root


def _turn(n: int, k: int, label: str, start: str = "0.5000", end: str = "1.2000") -> str:
    return f"[{start} - {end}]\tSes0{n}F_impro01_F00{k}\t{label}\t[2.5000, 3.0000, 3.5000]"


def _iemocap_turns() -> dict[int, list[str]]:
    return {
        1: [_turn(1, 0, "neu"), _turn(1, 1, "exc"), _turn(1, 2, "xxx"), _turn(1, 3, "fru")],
        4: [_turn(4, 0, "ang"), _turn(4, 1, "hap")],
        5: [_turn(5, 0, "sad"), _turn(5, 1, "oth")],
    }


def test_iemocap_4class(in_tmp: Path, media: dict[str, bytes]) -> None:
    _make_iemocap(in_tmp, media, _iemocap_turns())
    params = _params(in_tmp, "iemocap", task="classification")
    summary, manifest, errors = _run(in_tmp, params)
    assert list(manifest.columns) == [*MANIFEST_COLUMNS, *VAD_COLUMNS]
    assert manifest["clip_id"].tolist() == [
        "Ses01F_impro01$_$Ses01F_impro01_F000", "Ses01F_impro01$_$Ses01F_impro01_F001",
        "Ses04F_impro01$_$Ses04F_impro01_F000", "Ses04F_impro01$_$Ses04F_impro01_F001",
        "Ses05F_impro01$_$Ses05F_impro01_F000",
    ]
    assert manifest["split"].tolist() == ["train", "train", "valid", "valid", "test"]
    annotations = ["neutral", "happy", "angry", "happy", "sad"]  # exc → happy
    assert manifest["annotation"].tolist() == annotations
    assert manifest["label_class"].tolist() == [IEMOCAP_4CLASS.index(a) for a in annotations]
    assert manifest["label"].isna().all()
    assert manifest["media"][0] == "raw/Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert manifest["start"].tolist() == [0.5] * 5 and manifest["end"].tolist() == [1.2] * 5
    assert manifest["text"][1] == "Words of F001."
    assert manifest["valence"].tolist() == [2.5] * 5 and manifest["dominance"][0] == 3.5
    dropped = dict(zip(errors["clip_id"], errors["error"], strict=True))
    assert set(dropped) == {
        "Ses01F_impro01$_$Ses01F_impro01_F002", "Ses01F_impro01$_$Ses01F_impro01_F003",
        "Ses05F_impro01$_$Ses05F_impro01_F001",
    }
    fru = dropped["Ses01F_impro01$_$Ses01F_impro01_F003"]
    assert "EmoEvaluation/Ses01F_impro01.txt line 15: label 'fru' is not a class of the 4c" in fru
    assert summary["dropped_label"] == 3


def test_iemocap_6class(in_tmp: Path, media: dict[str, bytes]) -> None:
    _make_iemocap(in_tmp, media, _iemocap_turns())
    params = _params(in_tmp, "iemocap", task="classification", target="6class")
    _, manifest, errors = _run(in_tmp, params)
    annotations = ["neutral", "excited", "frustrated", "angry", "happy", "sad"]
    assert manifest["annotation"].tolist() == annotations
    assert manifest["label_class"].tolist() == [IEMOCAP_6CLASS.index(a) for a in annotations]
    assert len(errors) == 2 and sources.classes(params) == IEMOCAP_6CLASS


def test_iemocap_malformed(in_tmp: Path, media: dict[str, bytes]) -> None:
    turns = {
        1: [
            _turn(1, 0, "neu"),
            "[0.5 - 1.2]\tSes01F_impro01_F001\tneu",  # no [v, a, d]
            _turn(1, 2, "zzz"),
            _turn(1, 3, "ang", start="2.0", end="1.0"),
        ],
        5: [_turn(5, 0, "sad")],
    }
    _make_iemocap(in_tmp, media, turns, skip_avi=5)
    summary, manifest, errors = _run(in_tmp, _params(in_tmp, "iemocap", task="classification"))
    assert manifest["clip_id"].tolist() == ["Ses01F_impro01$_$Ses01F_impro01_F000"]
    by_clip = dict(zip(errors["clip_id"], errors["error"], strict=True))
    assert "line 7: expected '[start - end]" in by_clip["Ses01F_impro01$_$Ses01F_impro01_F001"]
    assert "line 11: unknown label 'zzz'" in by_clip["Ses01F_impro01$_$Ses01F_impro01_F002"]
    assert "line 15: empty or negative time window" in by_clip[
        "Ses01F_impro01$_$Ses01F_impro01_F003"
    ]
    assert "Ses05F_impro01.avi not found" in by_clip["Ses05F_impro01$_$Ses05F_impro01_F000"]
    assert summary["dropped"] == 4


def test_iemocap_needs_sessions_and_classification(in_tmp: Path) -> None:
    (in_tmp / "raw").mkdir()
    with pytest.raises(IngestError, match="no Session1..Session5 folder"):
        _run(in_tmp, _params(in_tmp, "iemocap", task="classification"))
    with pytest.raises(ParamsError, match="set dataset.task: classification"):
        _params(in_tmp, "iemocap")
    with pytest.raises(ParamsError, match="target: '6class' does not apply to layout 'meld'"):
        _params(in_tmp, "meld", task="classification", target="6class")
    with pytest.raises(ParamsError, match="target: 'emotion' does not apply to layout 'mmsa'"):
        _params(in_tmp, "mmsa", target="emotion")


# --- own folder ----------------------------------------------------------------------------


def _make_folder(tmp_path: Path, media: dict[str, bytes], rows: list[dict], names=None) -> Path:
    root = tmp_path / "raw"
    (root / "videos").mkdir(parents=True)
    for row in rows:
        if row.get("path") and not row.get("skip"):
            (root / row["path"]).write_bytes(media["mp4"])
    frame = pd.DataFrame(rows).drop(columns=["skip"], errors="ignore")
    frame[names or frame.columns].to_csv(root / "clips.csv", index=False)
    return root


def test_folder_with_split_and_optional_cells(in_tmp: Path, media: dict[str, bytes]) -> None:
    rows = [
        {"clip_id": "a", "path": "videos/a.mp4", "text": "good", "label": 1.5, "split": "train"},
        {"clip_id": "b", "path": "videos/b.mp4", "text": "", "label": "", "split": "val"},
        {"clip_id": "c", "path": "videos/c.mp4", "text": "meh", "label": "x", "split": "test"},
        {"clip_id": "d", "path": "videos/d.mp4", "text": "bad", "label": -2, "split": "test",
         "skip": True},
        {"clip_id": "e", "path": "videos/e.mp4", "text": "no", "label": -0.5, "split": "test"},
    ]
    _make_folder(in_tmp, media, rows)
    _, manifest, errors = _run(in_tmp, _params(in_tmp, "folder"))
    assert manifest["clip_id"].tolist() == ["a", "b", "e"]
    assert manifest["split"].tolist() == ["train", "valid", "test"]
    assert manifest["media"][0] == "raw/videos/a.mp4" and manifest["video_id"][0] == "a"
    assert manifest["label"][0] == 1.5 and math.isnan(manifest["label"][1])
    assert manifest["label_class"].tolist() == [2, -1, 0]  # polarity; none when unlabelled
    assert manifest["annotation"].tolist() == ["Positive", "", "Negative"]
    by_clip = dict(zip(errors["clip_id"], errors["error"], strict=True))
    assert by_clip["b"] == "raw/clips.csv line 3: empty transcript; clip kept"
    assert by_clip["c"] == "raw/clips.csv line 4: label 'x' is not a number; clip dropped"
    assert "line 5: media file raw/videos/d.mp4 not found" in by_clip["d"]


def test_folder_without_split_is_seeded_80_10_10(in_tmp: Path, media: dict[str, bytes]) -> None:
    rows = [{"clip_id": f"c{i}", "path": f"videos/c{i}.mp4", "text": "hi"} for i in range(10)]
    _make_folder(in_tmp, media, rows)
    summary, manifest, _ = _run(in_tmp, _params(in_tmp, "folder"))
    assert (summary["train_clips"], summary["valid_clips"], summary["test_clips"]) == (8, 1, 1)
    assert manifest["label"].isna().all() and (manifest["label_class"] == -1).all()
    splits = dict(zip(manifest["clip_id"], manifest["split"], strict=True))
    assert splits == folder_splits([f"c{i}" for i in reversed(range(10))], seed=0)
    assert splits != folder_splits(list(splits), seed=1)


def test_folder_bad_header(in_tmp: Path, media: dict[str, bytes]) -> None:
    rows = [{"clip_id": "a", "path": "videos/a.mp4", "txt": "typo"}]
    _make_folder(in_tmp, media, rows)
    with pytest.raises(IngestError, match=r"clips.csv: unknown column\(s\) txt"):
        _run(in_tmp, _params(in_tmp, "folder"))
    _make_folder(in_tmp / "other", media, [{"clip_id": "a", "text": "x", "path": ""}],
                 names=["clip_id", "text"])
    shutil.rmtree(in_tmp / "raw")
    (in_tmp / "other" / "raw").rename(in_tmp / "raw")
    with pytest.raises(IngestError, match=r"clips.csv: missing column\(s\) path"):
        _run(in_tmp, _params(in_tmp, "folder"))


# --- ingest → extract → cache --------------------------------------------------------------


def _ingest_and_extract(in_tmp: Path, layout: str) -> tuple[Params, Paths, dict]:
    """The real ingest and extract stages on ``in_tmp/raw`` (classification, one worker)."""
    from tasks import extract

    params = load_params(
        ROOT / "params.yaml",
        overrides={
            "dataset.name": "t", "dataset.root": "raw", "dataset.layout": layout,
            "dataset.task": "classification", "extract.workers": 1,
            "cache.variants": ["unaligned"],
        },
    )
    paths = Paths.from_params(params, base=in_tmp)
    build_manifest(params, paths)
    return params, paths, extract.run(params, paths)


def test_meld_end_to_end_reaches_hdf5(in_tmp: Path, media: dict[str, bytes]) -> None:
    """Classification labels and the full class list of MELD reach the HDF5 cache."""
    from tasks.cache import build_cache

    rows = _meld_rows()
    rows = {"train": rows["train"][:2], "dev": rows["dev"][:1], "test": rows["test"][:1]}
    _make_meld(in_tmp, rows, media["mp4"])
    params, paths, summary = _ingest_and_extract(in_tmp, "meld")
    assert summary["clips"] == 4 and not summary["failed_clips"]
    cache = build_cache(params, paths)
    assert cache["clips"] == 4
    with h5py.File(paths.h5("unaligned"), "r") as f:
        assert json.loads(f.attrs["class_names"]) == list(MELD_EMOTIONS)
        assert f.attrs["num_classes"] == 7 and f.attrs["task"] == "classification"
        assert f["train/label_class"][:].tolist() == [4, 6]  # neutral, surprise
        assert f["train/label"][:].tolist() == [0.0, 1.0]
        ids = [s.decode() for s in f["train/ids"][:]]
        assert ids == ["train_dia0$_$utt0", "train_dia0$_$utt1"]
        assert f["test/label_class"][:].tolist() == [6]


def test_iemocap_end_to_end_cuts_turns_from_dialog_video(
    in_tmp: Path, media: dict[str, bytes]
) -> None:
    """Each turn's window is cut out of the 2 s dialog avi: rows only inside it, from 0."""
    from tasks.cache import build_cache
    from tasks.formats.csd import read_csd

    turns = {
        1: [_turn(1, 0, "neu", "0.2500", "0.9500"), _turn(1, 1, "ang", "1.0000", "1.8000")],
        4: [_turn(4, 0, "sad")],
        5: [_turn(5, 0, "hap")],
    }
    _make_iemocap(in_tmp, media, turns)
    params, paths, summary = _ingest_and_extract(in_tmp, "iemocap")
    assert summary["clips"] == 4 and not summary["failed_clips"], summary
    hop, fps = params.extract.audio.hop_seconds, params.extract.vision.fps
    first, second = "Ses01F_impro01$_$Ses01F_impro01_F000", "Ses01F_impro01$_$Ses01F_impro01_F001"
    for name, rate in (("librosa", 1 / hop), ("facemesh", fps)):
        with read_csd(paths.csd_dir / f"{name}.csd") as seq:
            for cid, length in ((first, 0.7), (second, 0.8)):
                feats, ivals = seq.get(cid)
                assert ivals[0, 0] == pytest.approx(0.0, abs=1e-6), (name, cid)
                assert ivals[-1, 1] <= length + 1.0 / rate + 1e-6, (name, cid, ivals[-1])
                # about `rate` rows per second of the window, not of the 2 s dialog
                assert abs(len(feats) - length * rate) <= 2, (name, cid, len(feats))
    with read_csd(paths.csd_dir / "words.csd") as words:
        got = [w.decode() for w in words.get(first)[0][:, 0]]
        assert got == ["Words", "of", "F000"]  # punctuation is not a word
    cache = build_cache(params, paths)
    assert cache["clips"] == 4
    with h5py.File(paths.h5("unaligned"), "r") as f:
        assert json.loads(f.attrs["class_names"]) == list(IEMOCAP_4CLASS)
        assert f["train/label_class"][:].tolist() == [
            IEMOCAP_4CLASS.index("neutral"), IEMOCAP_4CLASS.index("angry")
        ]
