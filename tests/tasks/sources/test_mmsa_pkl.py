"""Source ``mmsa_pkl``: generated pickles in MMSA's exact layout → manifest → HDF5 cache."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from config.errors import ParamsError
from config.paths import Paths
from tasks import cache, extract, ingest
from tasks.contracts import MANIFEST_COLUMNS
from tasks.formats.dataset import H5Dataset, read_spec
from tasks.params import load_params
from tasks.sources.mmsa_pkl import PickleFormatError
from tasks.training.settings import resolve_model, variant_note

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
SIZES = {"train": 6, "valid": 2, "test": 2}
# MOSI unaligned: text 50 x 768, audio 375 x 5 (COVAREP subset), vision 500 x 20 (FACET)
MOSI = {"text": 50, "audio": (375, 5), "vision": (500, 20)}


def make_split(rng: np.random.Generator, split: str, n: int, aligned: bool) -> dict[str, Any]:
    """One split as MMSA's pickles hold it (dtypes included)."""
    lt = MOSI["text"]
    la, da = (lt, 5) if aligned else MOSI["audio"]
    lv, dv = (lt, 20) if aligned else MOSI["vision"]
    n_tok = rng.integers(5, lt + 1, size=n)
    text_bert = np.zeros((n, 3, lt), np.float32)  # MMSA stores ids/mask/segments as floats
    text = rng.normal(size=(n, lt, 768)).astype(np.float32)  # BERT outputs: padding nonzero
    for i, k in enumerate(n_tok):
        text_bert[i, 0, :k] = np.r_[101, rng.integers(1000, 30000, k - 2), 102]
        text_bert[i, 1, :k] = 1
    a_len = n_tok if aligned else rng.integers(1, la + 1, size=n)
    v_len = n_tok if aligned else rng.integers(1, lv + 1, size=n)
    audio = np.zeros((n, la, da), np.float32)
    vision = np.zeros((n, lv, dv), np.float32)
    for i in range(n):
        audio[i, : a_len[i]] = rng.normal(2.0, 3.0, size=(a_len[i], da))
        vision[i, : v_len[i]] = rng.normal(-1.0, 0.5, size=(v_len[i], dv))
    labels = np.round(rng.uniform(-3, 3, size=n), 1).astype(np.float32)
    labels[0] = 0.0
    part: dict[str, Any] = {
        "id": np.array([f"vid{split}{i // 2}$_${i % 2}" for i in range(n)], dtype=object),
        "raw_text": np.array([f"clip {split} {i} words" for i in range(n)], dtype=object),
        "text": text,
        "text_bert": text_bert,
        "audio": audio,
        "vision": vision,
        "regression_labels": labels,
        "classification_labels": (np.sign(labels) + 1).astype(np.float32),
        "annotations": [("Negative", "Neutral", "Positive")[int(np.sign(x)) + 1] for x in labels],
    }
    if not aligned:
        part["audio_lengths"] = [int(x) for x in a_len]  # MMSA keeps these as lists
        part["vision_lengths"] = np.asarray(v_len, np.int64)
    return part


def make_pickle(path: Path, aligned: bool = False, seed: int = 0, edit=None) -> Path:
    """Write a tiny MMSA pickle (6/2/2 clips, MOSI dims); ``edit(data)`` may corrupt it."""
    rng = np.random.default_rng(seed)
    data = {s: make_split(rng, s, n, aligned) for s, n in SIZES.items()}
    if edit is not None:
        edit(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return path


def setup(tmp_path: Path, pkl: Path, **over: Any) -> tuple[Any, Paths]:
    """Params naming ``pkl`` (source mmsa_pkl) and paths under ``tmp_path``."""
    variant = "aligned" if "aligned" in pkl.name and "unaligned" not in pkl.name else "unaligned"
    overrides = {
        "dataset.name": "mosi",
        "dataset.source": "mmsa_pkl",
        "dataset.root": str(pkl),
        "cache.variants": [variant],
        **over,
    }
    params = load_params(PARAMS, overrides=overrides)
    return params, Paths.from_params(params, base=tmp_path)


def run_stages(params: Any, paths: Paths) -> dict[str, Any]:
    """ingest → extract → cache through the stages' own entry points (their dispatch)."""
    ingest.build_manifest(params, paths)
    extract.run(params, paths)
    return cache.build_cache(params, paths)


def test_unaligned_conversion_field_by_field(tmp_path: Path) -> None:
    def add_inf(data: dict[str, Any]) -> None:
        data["train"]["audio"][1, 0, :2] = -np.inf  # COVAREP log-energy on silence
        data["train"]["audio"][2, 0, 0] = np.nan

    pkl = make_pickle(tmp_path / "raw" / "unaligned_50.pkl", edit=add_inf)
    params, paths = setup(tmp_path, pkl)
    with open(pkl, "rb") as fh:
        data = pickle.load(fh)

    m_summary = ingest.build_manifest(params, paths)
    assert m_summary["clips"] == 10 and m_summary["train_clips"] == 6
    manifest = pd.read_csv(paths.manifest, keep_default_na=False)
    assert list(manifest.columns[:10]) == list(MANIFEST_COLUMNS)
    assert manifest["clip_id"].tolist() == [i for s in SIZES for i in data[s]["id"]]
    assert manifest["video_id"].iloc[0] == "vidtrain0"
    assert manifest.loc[0, "annotation"] == "Neutral" and manifest.loc[0, "label_class"] == 1

    e_summary = extract.run(params, paths)
    assert e_summary["sequences"] == {} and "nothing to extract" in e_summary["note"]
    assert paths.csd_dir.is_dir() and not list(paths.csd_dir.iterdir())
    assert pd.read_csv(paths.extract_errors).empty

    summary = cache.build_cache(params, paths)
    assert summary["variants"] == "unaligned" and summary["clips"] == 10
    assert summary["audio_nonfinite_zeroed"] == 3 and summary["skipped_bad"] == 0

    with h5py.File(paths.h5("unaligned"), "r") as f:
        assert f.attrs["variant"] == "unaligned" and f.attrs["task"] == "regression"
        assert f.attrs["text_encoder"] == "bert-base-uncased"
        assert json.loads(f.attrs["dims"]) == {"words": 768, "audio": 5, "vision": 20}
        assert json.loads(f.attrs["seq_len"]) == {
            "tokens": 50, "words": 50, "audio": 375, "vision": 500
        }
        assert json.loads(f.attrs["class_names"]) == ["Negative", "Neutral", "Positive"]
        assert int(f.attrs["num_classes"]) == 1
        for split in SIZES:
            g, src = f[split], data[split]
            assert [x.decode() for x in g["ids"][()]] == list(src["id"])
            assert [x.decode() for x in g["raw_text"][()]] == list(src["raw_text"])
            tb = src["text_bert"]
            assert g["text_ids"].dtype == np.int32 and g["text_mask"].dtype == bool
            np.testing.assert_array_equal(g["text_ids"][()], tb[:, 0].astype(np.int32))
            np.testing.assert_array_equal(g["text_mask"][()], tb[:, 1] > 0)
            w_len = tb[:, 1].sum(1).astype(np.int32)
            np.testing.assert_array_equal(g["words_lengths"][()], w_len)
            lens = {
                "words": w_len,
                "audio": np.asarray(src["audio_lengths"]),
                "vision": np.asarray(src["vision_lengths"]),
            }
            for m, key in (("words", "text"), ("audio", "audio"), ("vision", "vision")):
                want = np.nan_to_num(src[key], nan=0.0, neginf=0.0, posinf=0.0)
                for i, k in enumerate(lens[m]):
                    want[i, k:] = 0.0  # contract: zero right padding past the true length
                np.testing.assert_array_equal(g[m][()], want)
                np.testing.assert_array_equal(g[f"{m}_lengths"][()], lens[m])
                assert g[f"{m}_lengths"].dtype == np.int32 and g[m].chunks[0] == 1
            np.testing.assert_array_equal(g["label"][()], src["regression_labels"])
            np.testing.assert_array_equal(
                g["label_class"][()], np.sign(src["regression_labels"]).astype(int) + 1
            )
        # Normalisation statistics: train's real rows only, after the -inf/NaN fix.
        src = data["train"]
        for m in ("audio", "vision"):
            x = np.nan_to_num(src[m], nan=0.0, neginf=0.0)
            rows = np.concatenate([x[i, :k] for i, k in enumerate(src[f"{m}_lengths"])])
            np.testing.assert_allclose(f[f"norm/{m}/mean"][()], rows.mean(0), rtol=1e-5)
            np.testing.assert_allclose(f[f"norm/{m}/std"][()], rows.std(0), rtol=1e-5)

    spec = read_spec(paths.h5("unaligned"))
    assert spec.text_encoder == "bert-base-uncased" and spec.dims["words"] == 768
    sample = H5Dataset(paths.h5("unaligned"), "valid")[1]
    assert sample["audio"].shape == (375, 5)
    assert int(sample["vision_mask"].sum()) == data["valid"]["vision_lengths"][1]


def test_aligned_pickle_without_lengths_uses_the_text_mask(tmp_path: Path) -> None:
    pkl = make_pickle(tmp_path / "aligned_50.pkl", aligned=True)
    params, paths = setup(tmp_path, pkl)
    summary = run_stages(params, paths)
    assert summary["variants"] == "aligned"
    with open(pkl, "rb") as fh:
        data = pickle.load(fh)
    with h5py.File(paths.h5("aligned"), "r") as f:
        assert json.loads(f.attrs["seq_len"]) == {
            "tokens": 50, "words": 50, "audio": 50, "vision": 50
        }
        mask_len = data["test"]["text_bert"][:, 1].sum(1).astype(np.int32)
        for m in ("words", "audio", "vision"):
            np.testing.assert_array_equal(f["test"][f"{m}_lengths"][()], mask_len)


def test_mmsa_fet_layout_tokens_padded_to_their_own_length(tmp_path: Path) -> None:
    """MMSA-FET pads text_bert and text each to its own length and adds a top-level config."""

    def fet(data: dict[str, Any]) -> None:
        data["config"] = {"text": {"model": "bert", "device": "cpu"}}
        for part in data.values():
            if "text_bert" in part:
                tb = part["text_bert"]
                wide = np.zeros((tb.shape[0], 3, 60), np.int64)
                wide[:, :, :50] = tb
                wide[0, 0, :55], wide[0, 1, :55] = 7, 1  # more tokens than text rows
                part["text_bert"] = wide

    pkl = make_pickle(tmp_path / "unaligned_50.pkl", edit=fet)
    params, paths = setup(tmp_path, pkl)
    run_stages(params, paths)
    with h5py.File(paths.h5("unaligned"), "r") as f:
        assert json.loads(f.attrs["seq_len"])["tokens"] == 60
        assert json.loads(f.attrs["seq_len"])["words"] == 50
        assert f["train"]["text_mask"][0].sum() == 55
        assert f["train"]["words_lengths"][0] == 50  # the text rows there are, not 55


def test_variant_disagreements_are_explained(tmp_path: Path) -> None:
    pkl = make_pickle(tmp_path / "unaligned_50.pkl")
    # The default variants follow what the source holds ...
    params, paths = setup(tmp_path, pkl, **{"cache.variants": ["unaligned", "aligned"]})
    assert params.cache.variants == ("unaligned",)
    # ... and one the source lacks is refused when params load, before any stage runs.
    with pytest.raises(ParamsError, match=r"cache.variants = \['aligned'\], but dataset.root "
                       r".*unaligned_50.pkl holds the unaligned variant only"):
        setup(tmp_path, pkl, **{"cache.variants": ["aligned"]})
    # File name says aligned, shapes say unaligned.
    renamed = tmp_path / "aligned_50.pkl"
    os.replace(pkl, renamed)
    params, paths = setup(tmp_path, renamed, **{"cache.variants": ["aligned"]})
    ingest.build_manifest(params, paths)
    with pytest.raises(PickleFormatError, match=r"file name says 'aligned'.*say 'unaligned'"):
        cache.build_cache(params, paths)


def test_the_release_folder_gives_each_variant_from_its_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "MOSI" / "Processed"
    make_pickle(folder / "unaligned_50.pkl")
    make_pickle(folder / "aligned_50.pkl", aligned=True)
    # Any other pickle there is never opened (it would run code if it were).
    with open(folder / "evil.pkl", "wb") as fh:
        pickle.dump({"train": {"id": _Evil()}, "valid": {}, "test": {}}, fh)
    params = load_params(PARAMS, overrides={"dataset.name": "mosi",
                                            "dataset.source": "mmsa_pkl",
                                            "dataset.root": str(folder)})
    assert params.cache.variants == ("unaligned", "aligned")
    paths = Paths.from_params(params, base=tmp_path)
    summary = run_stages(params, paths)
    assert summary["variants"] == "unaligned, aligned" and summary["clips"] == 10
    assert summary["aligned_pickle"].endswith("aligned_50.pkl")
    for variant in ("unaligned", "aligned"):
        assert read_spec(paths.h5(variant)).variant == variant
    assert resolve_model(params, "fasca_net")[0].variant == "aligned"  # its preset's
    assert resolve_model(params, "late_fusion")[0].variant == "unaligned"
    assert variant_note(params, "fasca_net") is None


@pytest.mark.parametrize(("name", "model", "runs_on", "where"), [
    ("unaligned_50.pkl", "fasca_net", "unaligned", "its preset 'mosi'"),
    ("aligned_50.pkl", "late_fusion", "aligned", "models.late_fusion.variant"),
])
def test_a_model_whose_variant_is_not_held_runs_on_the_held_one(tmp_path, name, model,
                                                                  runs_on, where) -> None:
    pkl = make_pickle(tmp_path / name, aligned=name.startswith("aligned"))
    params = load_params(PARAMS, overrides={"dataset.name": "mosi",
                                            "dataset.source": "mmsa_pkl",
                                            "dataset.root": str(pkl)})
    assert params.cache.variants == (runs_on,)
    assert resolve_model(params, model)[0].variant == runs_on
    note = variant_note(params, model)
    assert note is not None and where in note and f"it runs on {runs_on!r}" in note


def test_a_folder_without_release_pickles_says_what_it_looks_for(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    make_pickle(tmp_path / "data" / "mosi.pkl")
    params = load_params(PARAMS, overrides={"dataset.source": "mmsa_pkl",
                                            "dataset.root": str(tmp_path / "data")})
    with pytest.raises(PickleFormatError, match=r"without MMSA's release pickles "
                       r"\(unaligned_<n>.pkl, aligned_<n>.pkl\)"):
        ingest.build_manifest(params, Paths.from_params(params, base=tmp_path))
    named = load_params(PARAMS, overrides={
        "dataset.source": "mmsa_pkl", "dataset.root": str(tmp_path / "data"),
        "dataset.pkl": {"file": "mosi.pkl"}, "cache.variants": ["unaligned"],
    })
    assert ingest.build_manifest(named, Paths.from_params(named, base=tmp_path))["clips"] == 10


def _drop(split: str, key: str):
    def edit(data: dict[str, Any]) -> None:
        del data[split][key]

    return edit


def _reshape_text_bert(data: dict[str, Any]) -> None:
    data["valid"]["text_bert"] = data["valid"]["text_bert"][:, :2]


def _short_labels(data: dict[str, Any]) -> None:
    data["test"]["regression_labels"] = data["test"]["regression_labels"][:1]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_drop("valid", "vision"), r"\['valid'\] has no key 'vision'"),
        (_drop("test", "audio_lengths"), r"\['test'\] has no key 'audio_lengths'"),
        (_drop("train", "vision_lengths"), r"\['train'\] has no key\(s\) \['vision_lengths'\]"),
        (_reshape_text_bert, r"\['valid'\]\['text_bert'\]: expected shape \(2, 3, 50\)"),
        (_short_labels, r"\['test'\]\['regression_labels'\]: 1 labels for 2 ids"),
    ],
)
def test_malformed_pickle_names_file_split_and_key(tmp_path: Path, edit, match: str) -> None:
    pkl = make_pickle(tmp_path / "unaligned_50.pkl", edit=edit)
    params, paths = setup(tmp_path, pkl)
    with pytest.raises(PickleFormatError, match=match) as err:
        ingest.build_manifest(params, paths)
        cache.build_cache(params, paths)
    assert str(pkl) in str(err.value)


def test_missing_split_and_bad_lengths(tmp_path: Path) -> None:
    pkl = make_pickle(tmp_path / "unaligned_50.pkl", edit=lambda d: d.pop("valid"))
    params, paths = setup(tmp_path, pkl)
    with pytest.raises(PickleFormatError, match=r"split\(s\) \['valid'\] missing"):
        ingest.build_manifest(params, paths)

    def negative(data: dict[str, Any]) -> None:
        data["train"]["vision_lengths"][3] = -2

    pkl = make_pickle(tmp_path / "neg" / "unaligned_50.pkl", edit=negative)
    params, paths = setup(tmp_path, pkl)
    ingest.build_manifest(params, paths)
    with pytest.raises(PickleFormatError, match=r"\['vision_lengths'\]: index 3 holds -2"):
        cache.build_cache(params, paths)


def test_nan_in_vision_or_text_leaves_the_clip_out(tmp_path: Path) -> None:
    def nan(data: dict[str, Any]) -> None:
        data["train"]["vision"][4, 0, 3] = np.nan
        data["test"]["text"][1, 2, 0] = np.inf

    pkl = make_pickle(tmp_path / "unaligned_50.pkl", edit=nan)
    params, paths = setup(tmp_path, pkl)
    summary = run_stages(params, paths)
    assert summary["skipped_bad"] == 2 and summary["unaligned_train"] == 5
    assert summary["unaligned_test"] == 1
    assert "['train']['vision']: index 4 has NaN/Inf" in summary["bad"]["vidtrain2$_$0"]
    assert "['test']['text']: index 1" in summary["bad"]["vidtest0$_$1"]
    with h5py.File(paths.h5("unaligned"), "r") as f:
        ids = [x.decode() for x in f["train/ids"][()]]
        assert "vidtrain2$_$0" not in ids and len(ids) == 5
        assert f["train/audio"].shape[0] == f["train/label"].shape[0] == 5
        assert np.isfinite(f["train/vision"][()]).all()


def test_classification_labels_and_names(tmp_path: Path) -> None:
    pkl = make_pickle(tmp_path / "unaligned_50.pkl")
    params, paths = setup(tmp_path, pkl, **{"dataset.task": "classification"})
    run_stages(params, paths)
    spec = read_spec(paths.h5("unaligned"))
    assert spec.task == "classification" and spec.num_classes == 3
    assert spec.extra["class_names"] == ["Negative", "Neutral", "Positive"]

    no_cls = make_pickle(tmp_path / "b" / "unaligned_50.pkl", edit=_drop("test",
                                                                       "classification_labels"))
    params, paths = setup(tmp_path, no_cls, **{"dataset.task": "classification"})
    with pytest.raises(PickleFormatError, match=r"\['test'\] has no key 'classification_labels'"):
        ingest.build_manifest(params, paths)


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple]:
        return (os.getcwd, ())


def test_untrusted_pickle_cannot_run_code(tmp_path: Path) -> None:
    pkl = tmp_path / "unaligned_50.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump({"train": {"id": _Evil()}, "valid": {}, "test": {}}, fh)
    params, paths = setup(tmp_path, pkl)
    with pytest.raises(PickleFormatError, match=r"refusing to load (posix|nt)\.getcwd"):
        ingest.build_manifest(params, paths)


