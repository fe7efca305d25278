"""Stage `cache`: layout, alignment, train-only statistics, bad clips, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from config.paths import Paths
from config.schema import Params
from tasks.cache import build_cache, truncate_tokens
from tasks.formats.align import align_clip
from tasks.formats.csd import read_csd, write_csd
from tasks.formats.dataset import H5Dataset, collate, read_spec
from tasks.params import load_params

ROOT = Path(__file__).resolve().parents[2]
DIMS = {"words": 8, "audio": 5, "vision": 4}
SPLIT_OF = ["train"] * 6 + ["valid"] * 3 + ["test"] * 3


def _params(tmp_path: Path) -> Params:
    return load_params(
        ROOT / "params.yaml",
        overrides={
            "dataset.name": "t",
            "cache.seq_len": {"words": 6, "audio": 40, "vision": 10},
            "extract.text.max_tokens": 8,
        },
    )


def _clip(rng: np.random.Generator, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n_words = 3 + k % 6  # some clips exceed seq_len.words = 6
    starts = np.cumsum(rng.uniform(0.2, 0.5, n_words))
    words_iv = np.stack([starts, starts + 0.18], 1)
    if k == 3:
        words_iv = np.concatenate([words_iv, [[99.0, 99.5]]])  # past the media: dropped
        n_words += 1
    dur = float(words_iv[:, 1].max()) if k != 3 else float(starts[-1] + 0.3)
    t_a = np.arange(0, dur, 0.04)
    t_v = np.arange(0, dur, 1 / 6)
    n_tok = 4 + k  # some exceed max_tokens = 8
    tokens = np.concatenate([[101], rng.integers(1000, 2000, n_tok - 2), [102]])
    return {
        "words": (np.array([[f"w{i}".encode()] for i in range(n_words)]), words_iv),
        "word_embeddings": (rng.normal(size=(n_words, DIMS["words"])).astype(np.float32),
                            words_iv),
        "tokens": (tokens[:, None].astype(np.int64),
                   np.stack([np.linspace(0, dur, n_tok), np.linspace(0, dur, n_tok)], 1)),
        "librosa": (rng.normal(2.0, 3.0, size=(len(t_a), DIMS["audio"])).astype(np.float32),
                    np.stack([t_a, t_a + 0.04], 1)),
        "facemesh": (rng.normal(-1.0, 0.5, size=(len(t_v), DIMS["vision"])).astype(np.float32),
                     np.stack([t_v, t_v + 1 / 6], 1)),
    }


def make_inputs(paths: Paths, *, nan_clip: int | None = None, bump_test: float = 0.0) -> None:
    """12 clips (6/3/3) + one listed clip absent from the audio .csd."""
    rng = np.random.default_rng(0)
    ids = [f"v{k // 3}$_${k % 3}" for k in range(12)]
    entries: dict[str, list] = {k: [] for k in ("words", "word_embeddings", "tokens",
                                               "librosa", "facemesh")}
    for k, cid in enumerate(ids):
        clip = _clip(rng, k)
        if k == nan_clip:
            clip["facemesh"][0][1, 2] = np.nan
        if SPLIT_OF[k] == "test":
            clip["librosa"][0][:] += bump_test
        for name, (feats, iv) in clip.items():
            entries[name].append((cid, feats, iv))
    ghost = "v9$_$0"
    for name in ("words", "word_embeddings", "tokens", "facemesh"):
        _, feats, iv = entries[name][0]
        entries[name].append((ghost, feats, iv))
    paths.csd_dir.mkdir(parents=True, exist_ok=True)
    for name, items in entries.items():
        write_csd(paths.csd_dir / f"{name}.csd", name, items)
    frame = pd.DataFrame({
        "clip_id": [*ids, ghost],
        "video_id": [c.split("$_$")[0] for c in [*ids, ghost]],
        "split": [*SPLIT_OF, "train"],
        "media": "x.mp4", "start": "", "end": "",
        "text": [f"text {k}" for k in range(13)],
        "label": np.linspace(-2, 2, 13),
        "label_class": [0, 1, 2] * 4 + [0],
        "annotation": ["Negative", "Neutral", "Positive"] * 4 + ["Negative"],
    })
    paths.manifest.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(paths.manifest, index=False)


@pytest.fixture
def built(tmp_path: Path) -> tuple[Params, Paths, dict]:
    params = _params(tmp_path)
    paths = Paths.from_params(params, base=tmp_path)
    make_inputs(paths, nan_clip=7)
    return params, paths, build_cache(params, paths)


def test_layout_and_attrs(built) -> None:
    params, paths, summary = built
    assert summary["skipped_missing"] == 1 and "v9$_$0" in summary["missing"]
    assert summary["missing"]["v9$_$0"] == ["audio"]
    # NaN clip (index 7, valid split) skipped and reported with file + entry
    assert summary["skipped_bad"] == 1
    assert "facemesh.csd" in summary["bad"]["v2$_$1"] and "v2$_$1" in summary["bad"]["v2$_$1"]
    for variant in ("unaligned", "aligned"):
        assert summary[f"{variant}_train"] == 6 and summary[f"{variant}_valid"] == 2
        assert summary[f"{variant}_test"] == 3
        with h5py.File(paths.h5(variant), "r") as f:
            assert f.attrs["variant"] == variant and f.attrs["task"] == "regression"
            assert f.attrs["num_classes"] == 1 and f.attrs["dataset"] == "t"
            assert f.attrs["text_encoder"] == params.extract.text.tokenizer
            assert json.loads(f.attrs["dims"]) == DIMS
            seq = json.loads(f.attrs["seq_len"])
            assert seq["tokens"] == 8 and seq["words"] == 6
            assert json.loads(f.attrs["class_names"]) == ["Negative", "Neutral", "Positive"]
            assert json.loads(f.attrs["feature_sets"])["audio"] == "librosa"
            assert len(f.attrs["input_hash"]) == 64
            g = f["train"]
            assert g["ids"].shape == (6,) and g["ids"].chunks == (1,)
            assert g["text_ids"].dtype == np.int32 and g["text_mask"].dtype == bool
            assert g["audio"].shape == (6, seq["audio"], 5) and g["audio"].chunks[0] == 1
            assert g["label"].dtype == np.float32 and g["label_class"].dtype == np.int64
            assert g["ids"].asstr()[0] == "v0$_$0" and g["raw_text"].asstr()[0] == "text 0"
            assert "v2$_$1" not in list(f["valid/ids"].asstr()[:])
            for m in ("audio", "vision"):
                assert f[f"norm/{m}/mean"].shape == (DIMS[m],)
            # padding is zero beyond each length; tokens keep [SEP] last when truncated
            lens = g["audio_lengths"][:]
            for i, n in enumerate(lens):
                assert not g["audio"][i, n:].any()
                assert g["text_ids"][i][g["text_mask"][i]][-1] == 102
                assert g["text_ids"][i][0] == 101
            if variant == "unaligned":
                assert (g["words_lengths"][:] <= 6).all() and g["words_lengths"][:].max() == 6


def test_aligned_matches_aligner(built) -> None:
    _, paths, _ = built
    with h5py.File(paths.h5("aligned"), "r") as f:
        for s in ("train", "valid", "test"):
            g = f[s]
            np.testing.assert_array_equal(g["audio_lengths"][:], g["words_lengths"][:])
            np.testing.assert_array_equal(g["vision_lengths"][:], g["words_lengths"][:])
        # clip v1$_$0 (k = 3) has a word past the media: mmsdk drops it from every stream
        ids = list(f["train/ids"].asstr()[:])
        i = ids.index("v1$_$0")
        n = int(f["train/words_lengths"][i])
        with read_csd(paths.csd_dir / "words.csd") as w, \
                read_csd(paths.csd_dir / "librosa.csd") as a, \
                read_csd(paths.csd_dir / "facemesh.csd") as v, \
                read_csd(paths.csd_dir / "word_embeddings.csd") as e:
            words_iv = w.get("v1$_$0")[1]
            af, ai = a.get("v1$_$0")
            vf, vi = v.get("v1$_$0")
            emb = e.get("v1$_$0")[0]
        idx, al = align_clip(words_iv, {"audio": (ai, af), "vision": (vi, vf)})
        assert len(idx) == len(words_iv) - 1 == n
        np.testing.assert_allclose(f["train/audio"][i, :n], al["audio"], atol=1e-6)
        np.testing.assert_allclose(f["train/vision"][i, :n], al["vision"], atol=1e-6)
        np.testing.assert_allclose(f["train/words"][i, :n], emb[idx], atol=0)


def test_norm_stats_train_only_and_determinism(tmp_path: Path, built) -> None:
    params, paths, _ = built
    with h5py.File(paths.h5("unaligned"), "r") as f:
        g = f["train"]
        rows = np.concatenate(
            [g["audio"][i, : g["audio_lengths"][i]] for i in range(len(g["ids"]))]
        ).astype(np.float64)
        np.testing.assert_allclose(f["norm/audio/mean"][:], rows.mean(0), rtol=1e-5)
        np.testing.assert_allclose(f["norm/audio/std"][:], rows.std(0), rtol=1e-5)
        before = {k: f[k][:] for k in ("norm/audio/mean", "norm/audio/std", "train/audio")}
        hash_before = f.attrs["input_hash"]

    other = Paths.from_params(params, base=tmp_path / "other")
    make_inputs(other, nan_clip=7, bump_test=50.0)  # only test clips change
    build_cache(params, other)
    again = Paths.from_params(params, base=tmp_path / "again")
    make_inputs(again, nan_clip=7)
    build_cache(params, again)
    with h5py.File(other.h5("unaligned"), "r") as f:
        for k in ("norm/audio/mean", "norm/audio/std"):
            np.testing.assert_array_equal(f[k][:], before[k])
        assert f.attrs["input_hash"] != hash_before
    with h5py.File(again.h5("unaligned"), "r") as f:
        for k, v in before.items():
            np.testing.assert_array_equal(f[k][:], v)
        assert f.attrs["input_hash"] == hash_before


def test_dataset_over_built_cache(built) -> None:
    _, paths, _ = built
    for variant in ("unaligned", "aligned"):
        spec = read_spec(paths.h5(variant))
        assert spec.variant == variant and spec.dims == DIMS
        ds = H5Dataset(paths.h5(variant), "train")
        raw = H5Dataset(paths.h5(variant), "train", normalize=False)
        batch = collate([ds[i] for i in range(len(ds))])
        with h5py.File(paths.h5(variant), "r") as f:
            g = f["train"]
            for m in ("words", "audio", "vision"):
                np.testing.assert_array_equal(
                    batch[f"{m}_mask"].sum(1).numpy(), g[f"{m}_lengths"][:]
                )
                # padded positions stay exactly zero after normalisation
                assert not batch[m][~batch[f"{m}_mask"]].any()
            mean = torch.from_numpy(f["norm/audio/mean"][:])
            std = torch.from_numpy(f["norm/audio/std"][:])
        s, r = ds[0], raw[0]
        m = s["audio_mask"]
        torch.testing.assert_close(s["audio"][m], (r["audio"][m] - mean) / std)
        # normalised train audio has ~zero mean, unit std over real rows
        real = batch["audio"][batch["audio_mask"]]
        assert real.mean(0).abs().max() < 1e-4
        assert (real.std(0, unbiased=False) - 1).abs().max() < 1e-3
        assert batch["id"][0] == "v0$_$0" and batch["index"].tolist() == list(range(len(ds)))


def test_truncate_tokens_keeps_sep() -> None:
    ids = np.array([101, 5, 6, 7, 8, 102])
    np.testing.assert_array_equal(truncate_tokens(ids, 4), [101, 5, 6, 102])
    np.testing.assert_array_equal(truncate_tokens(ids, 6), ids)


def test_missing_inputs_fail_clearly(tmp_path: Path) -> None:
    params = _params(tmp_path)
    paths = Paths.from_params(params, base=tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        build_cache(params, paths)
    make_inputs(paths)
    (paths.csd_dir / "facemesh.csd").unlink()
    with pytest.raises(ValueError, match="facemesh.csd"):
        build_cache(params, paths)
    assert not paths.h5("unaligned").exists()
