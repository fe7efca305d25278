"""Source `csd`: official MOSI-layout sequences → manifest → per-clip .csd → HDF5 cache."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from config.errors import ParamsError
from config.paths import Paths
from config.schema import Params
from tasks import contracts
from tasks.cache import build_cache
from tasks.contracts import EXTRACT_ERROR_COLUMNS, ExtractionFailed, IngestError, SourceError
from tasks.extract import run as extract_run
from tasks.formats.csd import read_csd, write_csd
from tasks.ingest import build_manifest
from tasks.params import load_params
from tasks.sources.csd import extract as csd_extract
from tasks.sources.csd import manifest as csd_manifest

ROOT = Path(__file__).resolve().parents[3]
FOLDS = csd_manifest.standard_folds("mosi")
# One real MOSI video id from each standard fold, so the installed mmsdk folds split them.
VIDEOS = [next(v for v, s in FOLDS.items() if s == split) for split in ("train", "valid", "test")]
SEGMENTS = [(0.5, 3.0), (3.5, 6.5), (7.0, 9.5)]
DIMS = {"glove": 6, "covarep": 74, "facet": 35}
WORDS = ["i", "really", "liked", "sp", "this", "movie", "but", "the", "end", "sp", "was", "bad"]


def _video(rng: np.random.Generator, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """10 s of one video: words every 0.4 s (with pauses), COVAREP 100 Hz, FACET 30 Hz."""
    t_w = np.arange(0.0, 10.0, 0.4)
    words = np.array([[WORDS[i % len(WORDS)].encode()] for i in range(len(t_w))])
    w_iv = np.stack([t_w, t_w + 0.3], 1)
    glove = rng.normal(size=(len(t_w), DIMS["glove"]))
    t_a = np.arange(0.0, 10.0, 0.01)
    covarep = rng.normal(size=(len(t_a), DIMS["covarep"]))
    covarep[::50, 0] = -np.inf  # as in the official COVAREP (log of silence)
    t_v = np.arange(0.0, 10.0, 1 / 30)
    facet = rng.normal(size=(len(t_v), DIMS["facet"]))
    labels = np.array([[2.4 - 1.6 * i + 0.2 * k] for i in range(len(SEGMENTS))])
    return {
        "words": (words, w_iv),
        "glove": (glove, w_iv),
        "covarep": (covarep, np.stack([t_a, t_a + 0.01], 1)),
        "facet": (facet, np.stack([t_v, t_v + 1 / 30], 1)),
        "labels": (labels, np.array(SEGMENTS)),
    }


FILES = {
    "words": ("CMU_MOSI_TimestampedWords.csd", "words"),
    "glove": ("CMU_MOSI_TimestampedWordVectors.csd", "glove_vectors"),
    "covarep": ("CMU_MOSI_COVAREP.csd", "COVAREP"),
    "facet": ("CMU_MOSI_Visual_Facet_42.csd", "FACET 4.2"),
    "labels": ("CMU_MOSI_Opinion_Labels.csd", "Opinion Segment Labels"),
}


def make_official(root: Path, *, drop: dict[str, str] | None = None) -> None:
    """The official MOSI file names and root names; ``drop``: stream → video left out."""
    rng = np.random.default_rng(0)
    videos = {v: _video(rng, k) for k, v in enumerate(VIDEOS)}
    root.mkdir(parents=True, exist_ok=True)
    for stream, (name, root_name) in FILES.items():
        entries = [
            (v, *videos[v][stream]) for v in VIDEOS if (drop or {}).get(stream) != v
        ]
        meta = {"dimension names": [f"{stream}_{i}" for i in range(DIMS[stream])]} if (
            stream in DIMS) else {}
        write_csd(root / name, root_name, entries, meta)


def _params(root: Path, **extra: object) -> Params:
    return load_params(
        ROOT / "params.yaml",
        overrides={
            "dataset.name": "mosi_t",
            "dataset.source": "csd",
            "dataset.root": str(root),
            "cache.seq_len": {"words": 8, "audio": 300, "vision": 90},
            "extract.text.max_tokens": 16,
            **extra,
        },
    )


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Params, Paths, dict, dict]:
    make_official(tmp_path / "mosi")
    params = _params(tmp_path / "mosi")
    paths = Paths.from_params(params, base=tmp_path)
    ingest = build_manifest(params, paths)
    extract = extract_run(params, paths)
    return params, paths, ingest, extract


def test_manifest_from_labels_words_and_folds(built: tuple) -> None:
    params, paths, ingest, _ = built
    manifest = pd.read_csv(paths.manifest, keep_default_na=False)
    assert ingest["clips"] == 9 and ingest["dropped"] == 0
    assert (ingest["train_clips"], ingest["valid_clips"], ingest["test_clips"]) == (3, 3, 3)
    first = manifest.iloc[0]
    assert first["clip_id"] == f"{VIDEOS[0]}$_$0" and first["media"] == ""
    assert (first["start"], first["end"]) == (0.5, 3.0)
    # words overlapping [0.5, 3.0]: starts 0.4 .. 2.8 (0.0-0.3 is out), pauses ("sp") dropped
    assert first["text"] == "really liked this movie but the"
    assert first["label"] == pytest.approx(2.4) and first["annotation"] == "Positive"
    assert manifest["split"].tolist() == [FOLDS[v] for v in VIDEOS for _ in SEGMENTS]


def test_extract_segments_relative_times_and_nonfinite(built: tuple) -> None:
    params, paths, _, summary = built
    assert summary["failed_clips"] == 0
    assert set(summary["sequences"]) == {
        "words.csd", "word_embeddings.csd", "tokens.csd", "covarep.csd", "facet42.csd"
    }
    cid = f"{VIDEOS[1]}$_$1"  # segment [3.5, 6.5]
    with read_csd(paths.csd_dir / "covarep.csd") as r:
        feats, iv = r.get(cid)
        assert r.metadata["dimension names"][:2] == ["covarep_0", "covarep_1"]
    assert feats.shape == (300, 74) and np.isfinite(feats).all()
    assert iv[0] == pytest.approx([0.0, 0.01]) and iv[-1, 1] == pytest.approx(3.0)
    # rows 350, 400, 450, 500, 550, 600 of the video had -inf in column 0 → 0
    assert np.count_nonzero(feats[:, 0] == 0) == 6
    assert summary["nonfinite_covarep"] == 3 * (5 + 6 + 5)  # -inf rows inside the segments
    errors = pd.read_csv(paths.extract_errors)
    assert set(errors["severity"]) == {"warning"}
    assert errors["error"].str.contains("non-finite").all()
    with read_csd(paths.csd_dir / "words.csd") as w, \
            read_csd(paths.csd_dir / "word_embeddings.csd") as e, \
            read_csd(paths.csd_dir / "tokens.csd") as t:
        words, w_iv = w.get(cid)
        emb, e_iv = e.get(cid)
        tokens, _ = t.get(cid)
    assert b"sp" not in words.ravel().tolist()
    assert emb.shape == (len(words), DIMS["glove"]) and np.array_equal(w_iv, e_iv)
    assert w_iv.min() >= 0 and w_iv.max() <= 3.0
    assert tokens[0, 0] == 101 and tokens[-1, 0] == 102  # MiniLM [CLS] ... [SEP]


def test_cache_builds_from_csd_source(built: tuple) -> None:
    params, paths, _, _ = built
    summary = build_cache(params, paths)
    assert summary["clips"] == 9 and summary["skipped_missing"] == 0
    with h5py.File(paths.h5("aligned"), "r") as f:
        assert json.loads(f.attrs["feature_sets"])["audio"] == "covarep"
        assert json.loads(f.attrs["dims"]) == {"words": 6, "audio": 74, "vision": 35}
        assert f["train/audio"].shape == (3, 8, 74)
        assert f["test/ids"].asstr()[0] == f"{VIDEOS[2]}$_$0"
        assert np.isfinite(f["train/audio"][()]).all()
    with h5py.File(paths.h5("unaligned"), "r") as f:
        assert f["valid/vision"].shape == (3, 90, 35)
        assert f["valid/audio_lengths"][()].tolist() == [250, 300, 250]


def test_segment_missing_from_a_stream_is_reported(tmp_path: Path) -> None:
    make_official(tmp_path / "mosi", drop={"covarep": VIDEOS[0]})
    params = _params(tmp_path / "mosi", **{"extract.max_failed_fraction": 0.5})
    paths = Paths.from_params(params, base=tmp_path)
    build_manifest(params, paths)
    summary = extract_run(params, paths)
    assert summary["failed_clips"] == 3
    errors = pd.read_csv(paths.extract_errors)
    bad = errors[errors["severity"] == "error"]
    assert set(bad["modality"]) == {"audio"}
    assert bad["error"].str.contains(f"CMU_MOSI_COVAREP.csd: video '{VIDEOS[0]}'").all()
    cache = build_cache(params, paths)
    assert cache["missing"] == {f"{VIDEOS[0]}$_${i}": ["audio"] for i in range(3)}
    # too many failed clips stop the stage, naming the file
    strict = _params(tmp_path / "mosi", **{"extract.max_failed_fraction": 0.1})
    with pytest.raises(ExtractionFailed, match="CMU_MOSI_COVAREP.csd"):
        extract_run(strict, paths)


def test_wrong_layout_and_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "mosi"
    make_official(root)
    params = _params(root)
    paths = Paths.from_params(params, base=tmp_path)
    (root / FILES["facet"][0]).unlink()
    with pytest.raises(SourceError, match="dataset.csd.vision.*Facet_42"):
        build_manifest(params, paths)
    # an HDF5 file without the computational-sequence layout
    with h5py.File(root / FILES["facet"][0], "w") as f:
        f.create_dataset("features", data=np.zeros((3, 35)))
    build_manifest(params, paths)
    with pytest.raises(ValueError, match="Facet_42.csd: expected exactly one root group"):
        extract_run(params, paths)
    # labels with an unexpected width
    write_csd(root / FILES["labels"][0], "labels",
              [(VIDEOS[0], np.zeros((3, 4)), np.array(SEGMENTS))])
    with pytest.raises(SourceError, match="4 label columns"):
        build_manifest(params, paths)


def test_bad_labels_and_times_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "mosi"
    make_official(root)
    labels = np.array([[1.0], [7.5], [np.nan]])
    iv = np.array([[0.5, 3.0], [4.0, 5.0], [6.0, 6.0]])
    write_csd(root / FILES["labels"][0], "Opinion Segment Labels",
              [(VIDEOS[0], labels, iv), ("notAFoldVideo", labels[:1], iv[:1])])
    params = _params(root)
    paths = Paths.from_params(params, base=tmp_path)
    summary = build_manifest(params, paths)
    assert summary["clips"] == 1
    assert summary["dropped_label"] == 1 and summary["dropped_time"] == 1
    assert summary["dropped_split"] == 1
    errors = pd.read_csv(paths.ingest_errors)
    assert errors["error"].str.contains("bad time stamp").any()
    assert errors["error"].str.contains("in no mosi standard fold").any()
    with pytest.raises(IngestError, match="fail_fast"):
        build_manifest(_params(root, **{"ingest.fail_fast": True}), paths)


def test_seeded_folds_and_params() -> None:
    videos = [f"v{i}" for i in range(10)]
    a = csd_manifest.seeded_folds(videos, (0.7, 0.1, 0.2), seed=3)
    assert a == csd_manifest.seeded_folds(list(reversed(videos)), (0.7, 0.1, 0.2), seed=3)
    assert sorted(a.values()).count("train") == 7 and list(a.values()).count("test") == 2
    assert len(csd_manifest.standard_folds("mosei")) > 3000
    with pytest.raises(ParamsError, match="dataset.csd.audio_name"):
        _params(Path("x"), **{"dataset.csd.audio_name": "tokens"})
    with pytest.raises(ParamsError, match="dataset.csd.folds"):
        _params(Path("x"), **{"dataset.csd.folds": "sims"})


def test_segment_rows_clip_and_points() -> None:
    iv = np.array([[0.0, 1.0], [1.0, 2.0], [2.5, 2.5], [3.0, 4.0]])
    feats = np.arange(4)[:, None]
    f, out = csd_manifest.segment_rows(feats, iv, 0.5, 2.5)
    assert f.ravel().tolist() == [0, 1, 2]
    assert out.tolist() == [[0.0, 0.5], [0.5, 1.5], [2.0, 2.0]]


def test_without_official_vectors_words_are_encoded(tmp_path: Path) -> None:
    make_official(tmp_path / "mosi")
    params = _params(tmp_path / "mosi", **{"dataset.csd.word_vectors": ""})
    paths = Paths.from_params(params, base=tmp_path)
    build_manifest(params, paths)
    extract_run(params, paths)
    with read_csd(paths.csd_dir / "word_embeddings.csd") as e, \
            read_csd(paths.csd_dir / "words.csd") as w:
        emb, _ = e.get(f"{VIDEOS[0]}$_$2")
        words, _ = w.get(f"{VIDEOS[0]}$_$2")
    assert emb.shape == (len(words), 384) and np.isfinite(emb).all()  # MiniLM width


def test_read_clips_holds_arrays_grouped_by_video(tmp_path: Path) -> None:
    # csd_extract keeps the clips for all its passes: arrays (bytes per clip), not objects.
    rows = [(f"v{i % 7}$_${i // 7}", f"v{i % 7}", float(i), i + 0.5) for i in range(700)]
    manifest = pd.DataFrame(rows, columns=["clip_id", "video_id", "start", "end"])
    manifest.insert(2, "media", "")
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    clips = csd_extract.read_clips(tmp_path / "manifest.csv", chunk_rows=64)
    assert len(clips) == 700 and clips.videos == tuple(f"v{i}" for i in range(7))
    assert {a.dtype.kind for a in (clips.ids, clips.starts, clips.ends)} == {"S", "f"}
    assert clips.ids.nbytes + clips.starts.nbytes + clips.ends.nbytes <= 40 * len(clips)
    video, segs = next(clips.items())
    assert video == "v0" and segs[:2] == [(0, "v0$_$0", 0.0, 0.5), (1, "v0$_$1", 7.0, 7.5)]
    assert [row for row, *_ in segs] == list(range(100))
    manifest.loc[5, "clip_id"] = manifest.loc[3, "clip_id"]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=r"duplicate clip_id 'v3\$_\$0'"):
        csd_extract.read_clips(tmp_path / "manifest.csv", chunk_rows=64)


def test_report_rows_go_to_disk_as_they_come(tmp_path: Path) -> None:
    # The extract report holds counts, one flag per clip and the first errors, never the rows;
    # batches written on the way give the bytes of one to_csv of all rows.
    path = tmp_path / "errors.csv"
    expected = []
    with contracts.report_rows(path, list(EXTRACT_ERROR_COLUMNS)) as rows:
        report = csd_extract.Report(rows, n_clips=3000)
        for i in range(3000):
            if i % 3:
                report.warning(f"v$_${i}", "audio", f"{i} non-finite, \"quoted\"")
            else:
                report.error(i, f"v$_${i}", "text", f"no word, row {i}")
            expected.append(("warning", f"{i} non-finite, \"quoted\"") if i % 3 else
                            ("error", f"no word, row {i}"))
            assert rows.pending < rows.batch
    assert report.counts == {"error": 1000, "warning": 2000}
    assert int(report.failed.sum()) == 1000 and report.failed[::3].all()
    assert report.first_errors == [(f"v$_${i}", f"no word, row {i}") for i in (0, 3, 6)]
    held = [v for v in vars(report).values() if isinstance(v, (list, dict, set))]
    assert all(len(v) <= 3 for v in held)  # no per-clip Python containers
    whole = pd.DataFrame(
        [{"clip_id": f"v$_${i}", "stage": "extract", "modality": "text" if s == "error"
          else "audio", "severity": s, "error": e} for i, (s, e) in enumerate(expected)],
        columns=list(EXTRACT_ERROR_COLUMNS),
    )
    assert path.read_text() == whole.to_csv(index=False)

