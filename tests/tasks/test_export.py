"""`msaflow export mmsa`: the HDF5 cache → MMSA's processed pickle, and back through the
``mmsa_pkl`` source to the same arrays."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from config.paths import Paths
from msaflow import cli
from tasks import cache, extract, ingest
from tasks.contracts import SPLITS
from tasks.export import ExportError, export_mmsa
from tasks.formats.mmsa import META, release_name
from tasks.params import load_params
from tasks.sources.mmsa_pkl.reader import load_pickle
from tests.synthetic import make_h5

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
# What MMSA's MMDataset reads from a split, and what it needs them to be.
MMSA_KEYS = ("id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths",
             "vision_lengths", "regression_labels", "classification_labels", "annotations")
ARRAYS = ("ids", "raw_text", "text_ids", "text_mask", "words", "words_lengths", "audio",
          "audio_lengths", "vision", "vision_lengths", "label", "label_class")


def built(tmp_path: Path, name: str = "synth", **kw: Any) -> tuple[Any, Paths, Path]:
    """A generated cache of dataset ``name`` under ``tmp_path``: params, paths, the file."""
    params = load_params(PARAMS, overrides={"dataset.name": name, **kw.pop("over", {})})
    paths = Paths.from_params(params, base=tmp_path)
    variant = kw.get("variant", "unaligned")
    return params, paths, make_h5(paths.h5(variant), n=(12, 4, 4), **kw)


def read_back(tmp_path: Path, pkl: Path, variant: str, task: str = "regression") -> Path:
    """ingest → extract → cache of the exported pickle as dataset ``back``; its HDF5 file."""
    params = load_params(PARAMS, overrides={
        "dataset.name": "back", "dataset.source": "mmsa_pkl", "dataset.root": str(pkl),
        "dataset.task": task, "cache.variants": [variant],
    })
    paths = Paths.from_params(params, base=tmp_path)
    ingest.build_manifest(params, paths)
    extract.run(params, paths)
    cache.build_cache(params, paths)
    return paths.h5(variant)


def test_export_has_mmsa_keys_shapes_and_dtypes(tmp_path: Path) -> None:
    params, paths, h5 = built(tmp_path)
    summary = export_mmsa(params, paths)
    out = Path(summary["file"])
    with h5py.File(h5, "r") as f:
        seq = json.loads(f.attrs["seq_len"])
        dims = json.loads(f.attrs["dims"])
        # MMSA's release name, in the dataset's export folder
        assert out == paths.export("mmsa") / release_name("unaligned", seq["words"])
        assert summary["variant"] == "unaligned" and summary["train_clips"] == 12
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
        with open(out, "rb") as fh:
            data = pickle.load(fh)
        assert set(SPLITS) <= set(data) and data[META]["variant"] == "unaligned"
        assert data[META]["text_encoder"] == "minilm"
        for split in SPLITS:
            part, g = data[split], f[split]
            n = g["ids"].shape[0]
            assert set(MMSA_KEYS) <= set(part)
            assert part["text"].shape == (n, seq["words"], dims["words"])
            assert part["text_bert"].shape == (n, 3, seq["tokens"])
            assert part["audio"].shape == (n, seq["audio"], dims["audio"])
            assert part["vision"].shape == (n, seq["vision"], dims["vision"])
            for key in ("text", "audio", "vision", "regression_labels"):
                assert part[key].dtype == np.float32, key
            for key in ("text_bert", "audio_lengths", "vision_lengths", "text_lengths",
                        "classification_labels"):
                assert part[key].dtype == np.int64, key
            for key in ("id", "raw_text", "annotations", "audio_lengths", "vision_lengths",
                        "regression_labels", "classification_labels", "text_lengths"):
                assert part[key].shape == (n,), key
            assert list(part["id"]) == [x.decode() for x in g["ids"][()]]
            np.testing.assert_array_equal(part["text_bert"][:, 0], g["text_ids"][()])
            np.testing.assert_array_equal(part["text_bert"][:, 1], g["text_mask"][()])
            assert not part["text_bert"][:, 2].any()  # one segment
            # stored rows, not z-scored: MMSA normalises with its own settings
            np.testing.assert_array_equal(part["audio"], g["audio"][()])
            np.testing.assert_array_equal(part["text_lengths"], g["words_lengths"][()])
            polarity = ("Negative", "Neutral", "Positive")
            assert list(part["annotations"]) == [polarity[c] for c in g["label_class"][()]]
            # MMSA's loader: text (not BERT) features, labels reshaped per sample
            assert part["text"].astype(np.float32).shape[2] == dims["words"]


@pytest.mark.parametrize("variant", ["unaligned", "aligned"])
def test_round_trip_gives_the_same_arrays(tmp_path: Path, variant: str) -> None:
    params, paths, h5 = built(tmp_path, variant=variant)
    pkl = Path(export_mmsa(params, paths, variant)["file"])
    back = read_back(tmp_path, pkl, variant)
    with h5py.File(h5, "r") as a, h5py.File(back, "r") as b:
        for key in ("variant", "task", "text_encoder", "num_classes"):
            assert a.attrs[key] == b.attrs[key], key
        for key in ("dims", "seq_len", "class_names", "feature_sets"):
            assert json.loads(a.attrs[key]) == json.loads(b.attrs[key]), key
        for split in SPLITS:
            for key in ARRAYS:
                x, y = a[split][key], b[split][key]
                assert x.dtype == y.dtype and x.shape == y.shape, (split, key)
                np.testing.assert_array_equal(x[()], y[()], err_msg=f"{split}/{key}")
        for m in ("audio", "vision"):
            for stat in ("mean", "std"):  # the same rows, summed in another order
                np.testing.assert_allclose(a[f"norm/{m}/{stat}"][()], b[f"norm/{m}/{stat}"][()],
                                           rtol=1e-5, atol=1e-6)


def test_classification_export_and_round_trip(tmp_path: Path) -> None:
    params, paths, h5 = built(tmp_path, name="emo", task="classification", num_classes=4,
                              over={"dataset.task": "classification"})
    pkl = Path(export_mmsa(params, paths)["file"])
    data = load_pickle(pkl)  # the numpy-only unpickler reads it: nothing but arrays and dicts
    with h5py.File(h5, "r") as f:
        names = json.loads(f.attrs["class_names"])
        classes = f["test"]["label_class"][()]
    assert data[META]["task"] == "classification" and data[META]["class_names"] == names
    np.testing.assert_array_equal(data["test"]["classification_labels"], classes)
    assert list(data["test"]["annotations"]) == [names[c] for c in classes]
    back = read_back(tmp_path, pkl, "unaligned", task="classification")
    with h5py.File(back, "r") as b:
        assert json.loads(b.attrs["class_names"]) == names and int(b.attrs["num_classes"]) == 4
        np.testing.assert_array_equal(b["test"]["label_class"][()], classes)


def test_unimodal_labels_come_from_the_manifest(tmp_path: Path) -> None:
    params, paths, h5 = built(tmp_path, name="sims")
    with h5py.File(h5, "r") as f:
        ids = [x.decode() for s in SPLITS for x in f[s]["ids"][()]]
    paths.manifest.parent.mkdir(parents=True)
    pd.DataFrame({"clip_id": ids, "split": "train", "label_T": np.arange(len(ids)) / 10,
                  "label_A": 0.5, "label_V": -0.5}).to_csv(paths.manifest, index=False)
    summary = export_mmsa(params, paths, out=tmp_path / "out")  # a folder: MMSA's name in it
    assert Path(summary["file"]).parent == tmp_path / "out"
    assert summary["unimodal_labels"] == ["regression_labels_A", "regression_labels_T",
                                          "regression_labels_V"]
    data = load_pickle(Path(summary["file"]))
    first = ids.index(data["valid"]["id"][0])
    assert data["valid"]["regression_labels_T"][0] == pytest.approx(first / 10)
    assert data["valid"]["regression_labels_V"].dtype == np.float32


def test_bad_requests_say_what_to_build(tmp_path: Path, monkeypatch, capsys) -> None:
    params, paths, _ = built(tmp_path)  # the unaligned variant only
    with pytest.raises(ExportError, match=r"variant 'aligned' of dataset 'synth' is not built "
                                          r"\(built: unaligned\)"):
        export_mmsa(params, paths, "aligned")
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--params", str(PARAMS), "export", "mmsa", "-S", "dataset.name=nope"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: dataset 'nope' has no HDF5 cache" in err and "built: synth" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        cli.main(["export", "csv"])
    assert "invalid choice: 'csv'" in capsys.readouterr().err


def test_normalize_z_scores_real_rows_with_the_train_statistics(tmp_path: Path) -> None:
    params, paths, h5 = built(tmp_path)
    summary = export_mmsa(params, paths, normalize=True)
    assert Path(summary["file"]).name.endswith("_normalized.pkl") and summary["normalized"]
    data = load_pickle(Path(summary["file"]))
    assert data[META]["normalized"] is True
    with h5py.File(h5, "r") as f:
        mean, std = f["norm/vision/mean"][()], f["norm/vision/std"][()]
        raw, lengths = f["valid"]["vision"][()], f["valid"]["vision_lengths"][()]
    got = data["valid"]["vision"]
    k = int(lengths[0])
    np.testing.assert_allclose(got[0, :k], (raw[0, :k] - mean) / std, rtol=1e-5, atol=1e-5)
    assert not got[0, k:].any()  # padding stays zero
    train = np.concatenate([data["train"]["vision"][i, :n] for i, n in
                            enumerate(data["train"]["vision_lengths"])])
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-4)
