"""tasks.formats.dataset: lazy per-process HDF5 reads, masks, normalisation, collate, loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tasks.formats.dataset import CacheFormatError, H5Dataset, collate, read_spec
from tests.synthetic import make_h5


@pytest.fixture(scope="module")
def h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h5(tmp_path_factory.mktemp("cache") / "unaligned.h5", n=(24, 8, 8))


def test_sample_contract(h5: Path) -> None:
    ds = H5Dataset(h5, "train", preload_bytes=0)  # the lazy reader
    assert len(ds) == 24 and ds._file is None  # nothing opened until the first item
    s = ds[3]
    assert isinstance(s["id"], str)
    assert s["text_ids"].dtype == torch.long and s["text_mask"].dtype == torch.bool
    assert s["words"].shape == (12, 384) and s["audio"].shape == (30, 33)
    assert s["vision"].shape == (12, 20) and s["label"].dtype == torch.float32
    assert s["label_class"].dtype == torch.long and int(s["index"]) == 3
    with h5py.File(h5, "r") as f:
        for m in ("words", "audio", "vision"):
            n = int(f[f"train/{m}_lengths"][3])
            assert s[f"{m}_mask"].sum() == n and s[f"{m}_mask"][:n].all()
        raw_words = f["train/words"][3]
        mean, std = f["norm/vision/mean"][:], f["norm/vision/std"][:]
        raw_vision = f["train/vision"][3]
        n_v = int(f["train/vision_lengths"][3])
    # words are not normalised; vision is, on real rows only
    np.testing.assert_array_equal(s["words"].numpy(), raw_words)
    np.testing.assert_allclose(s["vision"][:n_v].numpy(), (raw_vision[:n_v] - mean) / std,
                               rtol=1e-5, atol=1e-5)
    assert not s["vision"][n_v:].any()
    raw = H5Dataset(h5, "train", normalize=False)[3]
    np.testing.assert_array_equal(raw["vision"].numpy(), raw_vision)


def test_small_split_in_memory_gives_the_lazy_samples(h5: Path) -> None:
    """A split under the preload size is read once; its samples equal the lazy reader's,
    bit for bit, and a sample's arrays are its own (normalising them changes no other)."""
    held, lazy = H5Dataset(h5, "train"), H5Dataset(h5, "train", preload_bytes=0)
    assert held.preloaded and not lazy.preloaded and lazy._file is None
    for i in (0, 7, 23):
        a, b = held[i], lazy[i]
        assert a.keys() == b.keys() and a["id"] == b["id"]
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
    again = held[7]
    assert torch.equal(again["vision"], lazy[7]["vision"])  # normalising copied the rows
    held_pickled = pickle.loads(pickle.dumps(held))
    assert held_pickled.preloaded and torch.equal(held_pickled[5]["audio"], lazy[5]["audio"])


def test_collate_and_spec(h5: Path) -> None:
    ds = H5Dataset(h5, "valid")
    batch = collate([ds[i] for i in range(4)])
    assert batch["audio"].shape == (4, 30, 33) and batch["audio_mask"].shape == (4, 30)
    assert len(batch["id"]) == 4 and all(isinstance(x, str) for x in batch["id"])
    spec = read_spec(h5)
    assert spec.variant == "unaligned" and spec.task == "regression" and spec.out_dim == 1
    assert spec.dims == {"words": 384, "audio": 33, "vision": 20}
    assert spec.seq_len["tokens"] == 16 and spec.extra["class_names"][0] == "Negative"


def test_pickle_and_workers(h5: Path) -> None:
    ds = H5Dataset(h5, "train")
    _ = ds[0]  # opens a handle in this process; pickling must drop it
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    torch.testing.assert_close(clone[5]["audio"], ds[5]["audio"])
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate)
    seen = torch.cat([b["index"] for b in loader])
    assert sorted(seen.tolist()) == list(range(24))
    ds.close()


def test_aligned_and_classification_files(tmp_path: Path) -> None:
    p = make_h5(tmp_path / "a.h5", variant="aligned", task="classification", num_classes=3)
    spec = read_spec(p)
    assert spec.variant == "aligned" and spec.out_dim == 3
    assert spec.seq_len["audio"] == spec.seq_len["words"] == spec.seq_len["vision"]
    s = H5Dataset(p, "test")[0]
    torch.testing.assert_close(s["audio_mask"], s["words_mask"])
    assert 0 <= int(s["label_class"]) < 3


def test_signal_is_learnable(h5: Path) -> None:
    """Per-modality masked means predict the label far better than chance (least squares)."""
    ds = H5Dataset(h5, "train")
    b = collate([ds[i] for i in range(len(ds))])
    feats = [torch.ones(len(ds), 1)]
    for m in ("words", "audio", "vision"):
        mk = b[f"{m}_mask"].unsqueeze(-1).float()
        feats.append((b[m] * mk).sum(1) / mk.sum(1))
    # a full regression on 384+33+20 means would overfit 24 rows: use each stream's first
    # principal component (the signal direction dominates the per-clip means)
    cols = [feats[0]]
    for x in feats[1:]:
        xc = x - x.mean(0)
        _, _, v = torch.linalg.svd(xc, full_matrices=False)
        cols.append(xc @ v[0:1].T)
    design = torch.cat(cols, 1)
    coef = torch.linalg.lstsq(design, b["label"].unsqueeze(1)).solution
    pred = (design @ coef).squeeze(1)
    corr = torch.corrcoef(torch.stack([pred, b["label"]]))[0, 1]
    assert corr > 0.7


def test_bad_inputs(tmp_path: Path, h5: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cache"):
        H5Dataset(tmp_path / "none.h5", "train")
    with pytest.raises(ValueError, match="split"):
        H5Dataset(h5, "dev")
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f.create_group("train").create_dataset("ids", data=np.array([b"a"]))
    with pytest.raises(CacheFormatError, match="lacks"):
        H5Dataset(broken, "train")
    with pytest.raises(IndexError):
        H5Dataset(h5, "test")[99]
