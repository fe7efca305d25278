"""tasks.formats.csd: our .csd writer/reader against the layout and the installed mmsdk."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from mmsdk import mmdatasdk
from mmsdk.mmdatasdk.configurations.metadataconfigs import featuresetMetadataTemplate

from tasks.formats.csd import (
    METADATA_CACHE_BYTES,
    METADATA_KEYS,
    CsdFormatError,
    CsdReader,
    decode_words,
    read_csd,
    write_csd,
)


def _entries(
    n_clips: int = 3, d: int = 5, seed: int = 0
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_clips):
        n = 4 + i
        starts = np.arange(n) * 0.04
        ivals = np.stack([starts, starts + 0.04], axis=1)
        out.append((f"vid{i}$_${i + 1}", rng.normal(size=(n, d)).astype(np.float32), ivals))
    return out


def _word_entries() -> list[tuple[str, np.ndarray, np.ndarray]]:
    words = [["this", "movie", "is", "très", "bien"], ["sp", "great"]]
    out = []
    for i, ws in enumerate(words):
        ivals = np.array([[0.3 * j, 0.3 * j + 0.25] for j in range(len(ws))])
        out.append((f"w{i}", np.array(ws).reshape(-1, 1), ivals))
    return out


def _mmsdk_metadata(root: str) -> dict[str, str]:
    meta = {key: f"{key} of {root}" for key in featuresetMetadataTemplate}
    meta["root name"] = root
    return meta


def _decode_installed(value: object) -> object:
    # mmsdk 0.0.6 hands back the raw h5py bytes of each metadata string; HEAD json-decodes.
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return json.loads(value)  # type: ignore[arg-type]
    except ValueError:
        return value


def test_round_trip_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "librosa.csd"
    entries = _entries()
    written = write_csd(
        path, "librosa", iter(entries), {"dataset name": "demo", "extractor params": {"sr": 16000}}
    )
    assert written == 3
    with h5py.File(path, "r") as h5:
        assert list(h5.keys()) == ["librosa"]
        assert set(h5["librosa"].keys()) == {"data", "metadata"}
        ds = h5["librosa/metadata/root name"]
        assert ds.shape == (1,) and h5py.check_string_dtype(ds.dtype) is not None
        assert json.loads(ds[0]) == "librosa"
        assert h5["librosa/data/vid0$_$1/intervals"].dtype == np.float64
    with read_csd(path) as csd:
        assert csd.root_name == "librosa"
        assert len(csd) == 3 and "vid1$_$2" in csd and "nope" not in csd
        assert sorted(csd) == sorted(k for k, _, _ in entries)
        for key, feats, ivals in entries:
            got_f, got_i = csd.get(key)
            np.testing.assert_array_equal(got_f, feats)
            np.testing.assert_array_equal(got_i, ivals)
            assert got_f.dtype == np.float32
        assert set(METADATA_KEYS) <= set(csd.metadata)
        assert csd.metadata["dataset name"] == "demo"
        assert csd.metadata["extractor params"] == {"sr": 16000}
        assert csd.metadata["alignment compatible"] is True
        assert csd.metadata["dimension names"] == [f"dim_{i}" for i in range(5)]
        assert len(list(csd.items())) == 3
        with pytest.raises(KeyError, match="nope"):
            csd.get("nope")


def test_same_content_same_digest(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csd", tmp_path / "b.csd"
    write_csd(a, "x", _entries(), {})
    write_csd(b, "x", _entries(), {})
    write_csd(tmp_path / "c.csd", "x", _entries(seed=1), {})
    meta = [read_csd(p).metadata for p in (a, b, tmp_path / "c.csd")]
    assert meta[0]["uuid"] == meta[1]["uuid"] and meta[0]["md5"] == meta[1]["md5"]
    assert meta[0]["md5"] != meta[2]["md5"]


def test_ours_read_by_mmsdk(tmp_path: Path) -> None:
    path = tmp_path / "feat.csd"
    entries = _entries()
    write_csd(path, "feat", entries, {"dataset name": "demo"})
    seq = mmdatasdk.computational_sequence(str(path))  # validates data and metadata
    try:
        assert sorted(seq.keys()) == sorted(k for k, _, _ in entries)
        for key, feats, ivals in entries:
            np.testing.assert_array_equal(seq[key]["features"][()], feats)
            np.testing.assert_array_equal(seq[key]["intervals"][()], ivals)
        meta = {k: _decode_installed(v) for k, v in seq.metadata.items()}
        assert set(featuresetMetadataTemplate) <= set(meta)
        assert meta["root name"] == "feat" and meta["dataset name"] == "demo"
        assert meta == read_csd(path).metadata
    finally:
        seq.h5handle.close()


def test_words_round_trip_and_mmdataset(tmp_path: Path) -> None:
    words_path, feat_path = tmp_path / "words.csd", tmp_path / "feat.csd"
    write_csd(words_path, "words", _word_entries(), {})
    write_csd(
        feat_path,
        "feat",
        [(k, np.ones((len(f), 3), np.float32), i) for k, f, i in _word_entries()],
        {},
    )
    with read_csd(words_path) as csd:
        feats, ivals = csd.get("w0")
        assert feats.dtype.kind == "S" and feats.shape == (5, 1)
        assert decode_words(feats) == ["this", "movie", "is", "très", "bien"]
        assert csd.metadata["dimension names"] == ["word"]
        assert ivals.shape == (5, 2)
    dataset = mmdatasdk.mmdataset({"words": str(words_path), "feat": str(feat_path)})
    try:
        assert set(dataset.keys()) == {"words", "feat"}
        got = dataset["words"]["w1"]["features"][()]
        assert got.dtype.kind == "S" and [w[0] for w in got] == [b"sp", b"great"]
    finally:
        for seq in dataset.computational_sequences.values():
            seq.h5handle.close()


def test_mmsdk_deployed_read_by_us(tmp_path: Path) -> None:
    path = tmp_path / "words.csd"
    entries = _word_entries()
    seq = mmdatasdk.computational_sequence("words")
    seq.setData(
        {k: {"features": np.char.encode(f, "utf-8"), "intervals": i} for k, f, i in entries},
        "words",
    )
    seq.setMetadata(_mmsdk_metadata("words"), "words")
    seq.deploy(str(path))
    with read_csd(path) as csd:
        assert csd.root_name == "words" and len(csd) == 2
        assert decode_words(csd.get("w0")[0]) == ["this", "movie", "is", "très", "bien"]
        # mmsdk 0.0.6 stores str(value): not JSON, kept as the plain string.
        assert csd.metadata["creator"] == "creator of words"
        assert csd.metadata["md5"] == "None"
        assert len(csd.metadata["uuid"]) == 36


def test_official_layout_fixture(tmp_path: Path) -> None:
    """The layout mmsdk HEAD's write_CSD gives CMU files: gzip-9, JSON metadata, S-words."""
    path = tmp_path / "CMU_MOSI_TimestampedWords.csd"
    root = "CMU_MOSI_TimestampedWords"
    with h5py.File(path, "w") as h5:
        data = h5.create_group(root).create_group("data")
        words = np.array([[b"sp"], [b"anyhow"], [b"it"], [b"was"], [b"really"], [b"good"]])
        ivals = np.array(
            [[0.0, 0.3], [0.3, 0.7], [0.7, 0.8], [0.8, 0.95], [0.95, 1.2], [1.2, 1.6]]
        )
        for vid in ("03bSnISJMiM", "0h-zjBukYpk"):
            g = data.create_group(vid)
            g.create_dataset("features", data=words, compression="gzip", compression_opts=9)
            g.create_dataset("intervals", data=ivals, compression="gzip", compression_opts=9)
        meta = h5[root].create_group("metadata")
        values = _mmsdk_metadata(root) | {"uuid": "2b8c0c5c-0f51-4a6c-9d52-0c1e3c6f9a11"}
        values |= {"md5": None, "alignment compatible": True}
        for key, value in values.items():
            meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            meta[key][0] = json.dumps(value)
    with CsdReader(path) as csd:
        assert csd.root_name == root
        assert csd.keys() == ["03bSnISJMiM", "0h-zjBukYpk"]
        assert csd.metadata["md5"] is None and csd.metadata["alignment compatible"] is True
        feats, got_ivals = csd.get("0h-zjBukYpk")
        assert decode_words(feats)[1] == "anyhow"
        np.testing.assert_array_equal(got_ivals, ivals)
    # and our writer copies it losslessly, streaming from the reader
    copy = tmp_path / "copy.csd"
    with read_csd(path) as src:
        assert write_csd(copy, root, src.items(), src.metadata) == 2
    with read_csd(copy) as csd:
        assert csd.metadata["uuid"] == "2b8c0c5c-0f51-4a6c-9d52-0c1e3c6f9a11"
        assert csd.get("03bSnISJMiM")[0].tolist() == words.tolist()


@pytest.mark.parametrize(
    ("features", "intervals", "message"),
    [
        (np.zeros(3), np.zeros((3, 2)), "features must be 2-D"),
        (np.zeros((3, 2)), np.zeros((3, 3)), r"intervals must have shape \(n, 2\)"),
        (np.zeros((3, 2)), np.zeros((4, 2)), "3 rows but intervals 4"),
        (np.zeros((2, 2)), np.array([[0, 1], [np.nan, 2]]), "row 1 is not finite"),
        (np.zeros((2, 2)), np.array([[0, 1], [2, 1.5]]), "row 1 has start > end"),
    ],
)
def test_write_rejects_bad_entry(
    tmp_path: Path, features: np.ndarray, intervals: np.ndarray, message: str
) -> None:
    path = tmp_path / "bad.csd"
    good = ("ok", np.zeros((1, 2)), np.array([[0.0, 1.0]]))
    with pytest.raises(CsdFormatError, match=message) as err:
        write_csd(path, "bad", [good, ("clip$_$7", features, intervals)], {})
    assert "bad.csd" in str(err.value) and "clip$_$7" in str(err.value)
    assert not path.exists()  # atomic: nothing half-written left behind
    assert not list(tmp_path.iterdir())


def test_write_rejects_inconsistent_entries(tmp_path: Path) -> None:
    ival = np.array([[0.0, 1.0]])
    with pytest.raises(CsdFormatError, match="3 columns, earlier entries 2"):
        write_csd(
            tmp_path / "a.csd", "a", [("x", np.zeros((1, 2)), ival), ("y", np.zeros((1, 3)), ival)]
        )
    with pytest.raises(CsdFormatError, match="duplicate"):
        write_csd(tmp_path / "a.csd", "a", [("x", np.zeros((1, 2)), ival)] * 2)
    with pytest.raises(CsdFormatError, match="not a valid HDF5 group name"):
        write_csd(tmp_path / "a.csd", "a", [("x/y", np.zeros((1, 2)), ival)])
    with pytest.raises(CsdFormatError, match="'root name'"):
        write_csd(tmp_path / "a.csd", "a", [], {"root name": "b"})
    with pytest.raises(CsdFormatError, match="not JSON-serialisable"):
        write_csd(tmp_path / "a.csd", "a", [], {"creator": object()})
    assert not (tmp_path / "a.csd").exists()


def _bad_file(path: Path, build: str) -> None:
    with h5py.File(path, "w") as h5:
        if build == "two roots":
            for root in ("a", "b"):
                h5.create_group(root).create_group("data")
                h5[root].create_group("metadata")
            return
        root = h5.create_group("r")
        if build != "no metadata":
            root.create_group("metadata")
        if build == "no data":
            return
        data = root.create_group("data")
        g = data.create_group("clip$_$1")
        n_int = 3 if build == "rows" else 2
        feats = np.zeros((2,)) if build == "ndim" else np.ones((2, 4))
        if build == "nan features":
            feats[1, 2] = np.nan
        ivals = np.tile([0.0, 1.0], (n_int, 1))
        if build == "inf intervals":
            ivals[1, 1] = np.inf
        g.create_dataset("features", data=feats)
        if build != "no intervals":
            g.create_dataset("intervals", data=ivals)


@pytest.mark.parametrize(
    ("build", "message", "on_open"),
    [
        ("two roots", "exactly one root group", True),
        ("no data", "/r/data group is missing", True),
        ("no metadata", "/r/metadata group is missing", True),
        ("no intervals", "/r/data/clip\\$_\\$1/intervals is missing", False),
        ("ndim", "clip\\$_\\$1/features must be 2-D", False),
        ("rows", "2 rows but intervals 3", False),
        ("inf intervals", "clip\\$_\\$1/intervals row 1 is not finite", False),
    ],
)
def test_reader_rejects_bad_layout(
    tmp_path: Path, build: str, message: str, on_open: bool
) -> None:
    path = tmp_path / "bad.csd"
    _bad_file(path, build)
    with pytest.raises(CsdFormatError, match=message) as err:
        with read_csd(path) as csd:
            assert not on_open, "should have failed on open"
            csd.get("clip$_$1")
    assert "bad.csd" in str(err.value)


def test_reader_check_finite(tmp_path: Path) -> None:
    path = tmp_path / "nan.csd"
    _bad_file(path, "nan features")
    with read_csd(path) as csd:
        assert np.isnan(csd.get("clip$_$1")[0]).sum() == 1  # tolerated unless asked
    with read_csd(path, check_finite=True) as csd:
        with pytest.raises(
            CsdFormatError, match=r"clip\$_\$1/features has NaN/Inf \(row 1, column 2\)"
        ):
            csd.get("clip$_$1")


def test_reader_rejects_non_hdf5_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "text.csd"
    path.write_text("not hdf5")
    with pytest.raises(CsdFormatError, match="text.csd: not an HDF5 file"):
        read_csd(path)
    with pytest.raises(FileNotFoundError, match="absent.csd"):
        read_csd(tmp_path / "absent.csd")


def test_metadata_cache_stays_bounded(tmp_path: Path) -> None:
    # HDF5's adaptive cache grows with every entry a one-pass walk touches (up to 32 MiB of
    # on-disk sizes per open file); a fixed one keeps reading memory flat per video.
    path = tmp_path / "many.csd"
    write_csd(path, "x", _entries(n_clips=400, d=2), compression=None)
    with read_csd(path) as reader:
        config = reader._h5.id.get_mdc_config()
        assert config.max_size == config.initial_size == METADATA_CACHE_BYTES
        assert (config.incr_mode, config.flash_incr_mode, config.decr_mode) == (0, 0, 0)
        for key in reader:
            reader.get(key)
        assert reader._h5.id.get_mdc_size()[0] <= METADATA_CACHE_BYTES

