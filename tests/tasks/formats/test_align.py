"""tasks.formats.align against mmsdk's own ``mmdataset.align`` (mean collapse), generated data."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from tasks.formats.align import align_clip, align_entry

mmdatasdk = pytest.importorskip("mmsdk.mmdatasdk")
mm_dataset_module = pytest.importorskip("mmsdk.mmdatasdk.dataset.dataset")


def _avg(intervals: np.ndarray, features: np.ndarray) -> np.ndarray:
    return np.average(features, axis=0)


def mmsdk_align(
    ref: np.ndarray,
    seqs: dict[str, tuple[np.ndarray, np.ndarray]],
    eps: float,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run mmsdk's align on one clip; return the words every sequence kept + their means."""
    # The installed mmsdk release hard-codes epsilon = 10e-4, HEAD 10e-6: pin it per test.
    monkeypatch.setattr(mm_dataset_module, "epsilon", eps)
    cs_cls = mmdatasdk.computational_sequence
    data = {"words": {"clip": {"intervals": ref, "features": np.arange(len(ref))[:, None]}}}
    for name, (iv, ft) in seqs.items():
        data[name] = {"clip": {"intervals": iv, "features": ft}}
    ds = object.__new__(mmdatasdk.mmdataset)  # its __init__ insists on files on disk
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ds.computational_sequences = {}
        for name, d in data.items():
            c = cs_cls(name)
            c.setData(d, name)
            ds.computational_sequences[name] = c
        ds.align("words", collapse_functions=[_avg])
    out = {k: ds.computational_sequences[k].data for k in data}
    # hard_unify: a segment survives only where every sequence produced it
    common = set.intersection(*(set(v) for v in out.values()))
    idx = np.array(sorted(int(k.split("[")[1][:-1]) for k in common), dtype=np.int64)
    return idx, {k: np.stack([out[k][f"clip[{i}]"]["features"][0] for i in idx])
                 if len(idx) else np.zeros((0, seqs[k][1].shape[1]))
                 for k in seqs}


def _words(rng: np.random.Generator, seconds: float, rate: float = 2.5) -> np.ndarray:
    """Word intervals with small gaps, like a forced aligner's output."""
    n = int(seconds * rate)
    starts = np.sort(rng.uniform(0, seconds, n))
    ends = np.minimum(starts + rng.uniform(0.05, 0.5, n), np.append(starts[1:], seconds))
    return np.stack([starts, ends], 1)


def _frames(seconds: float, hz: float, d: int, rng: np.random.Generator, win: float = 1.0):
    """Fixed-hop frames; ``win`` > 1 gives overlapping windows."""
    n = int(seconds * hz)
    s = np.arange(n) / hz
    iv = np.stack([s, s + win / hz], 1)
    return iv, rng.normal(size=(n, d)).astype(np.float32)


def _assert_same(ref, seqs, eps, monkeypatch):
    want_idx, want = mmsdk_align(ref, seqs, eps, monkeypatch)
    got_idx, got = align_clip(ref, seqs, eps=eps)
    np.testing.assert_array_equal(got_idx, want_idx)
    for k in seqs:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=1e-5, err_msg=k)
        assert np.isfinite(got[k]).all()
    return got_idx


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_clip_matches_mmsdk(seed: int, eps: float, monkeypatch) -> None:
    rng = np.random.default_rng(seed)
    ref = _words(rng, 20.0)
    seqs = {
        "audio": _frames(20.0, 100, 5, rng),
        "vision": _frames(19.0, 30, 4, rng, win=2.5),  # overlapping, ends before the words
    }
    idx = _assert_same(ref, seqs, eps, monkeypatch)
    assert 0 < len(idx) < len(ref)  # words past the vision stream's end are dropped


def test_boundaries_zero_lengths_and_gaps(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    # Words on the 0.1 s frame grid: frames end exactly at word starts/ends.
    ref = np.array(
        [[0.0, 0.3], [0.3, 0.3], [0.3, 0.7], [0.7, 0.70000001], [1.0, 1.2], [5.0, 6.0],
         [0.2, 0.5], [1.25, 1.26], [0.9, 0.6]]  # the last one reversed
    )
    iv, ft = _frames(2.0, 10, 3, rng)
    # a zero-length frame inside a word and a frame with a tiny length
    iv = np.concatenate([iv, [[0.45, 0.45], [1.1, 1.1000001]]])
    ft = np.concatenate([ft, rng.normal(size=(2, 3)).astype(np.float32)])
    for eps in (1e-5, 1e-3):
        idx = _assert_same(ref, {"audio": (iv, ft)}, eps, monkeypatch)
        assert 1 not in idx and 5 not in idx  # zero-length word, word beyond the audio


def test_unsorted_and_non_monotone_frames(monkeypatch) -> None:
    rng = np.random.default_rng(4)
    ref = _words(rng, 10.0)
    iv, ft = _frames(10.0, 30, 6, rng)
    perm = rng.permutation(len(iv))
    _assert_same(ref, {"a": (iv[perm], ft[perm])}, 1e-5, monkeypatch)
    # variable-length segments (ends not monotone after sorting by start): dense fallback
    starts = np.sort(rng.uniform(0, 10, 200))
    ends = starts + rng.uniform(0.0, 2.0, 200)
    seg = np.stack([starts, ends], 1)
    feats = rng.normal(size=(200, 2)).astype(np.float32)
    assert np.any(np.diff(ends) < 0)
    _assert_same(ref, {"a": (iv, ft), "b": (seg, feats)}, 1e-5, monkeypatch)
    # duplicated start times keep mmsdk's stable order (order does not change a mean, but
    # the same rows must be picked)
    dup = np.concatenate([iv, iv[::3]])
    dupf = np.concatenate([ft, ft[::3] + 1])
    _assert_same(ref, {"a": (dup, dupf)}, 1e-5, monkeypatch)


def test_align_entry_shapes_and_no_nan() -> None:
    ref = np.array([[0.0, 1.0], [3.0, 4.0]])
    iv = np.array([[0.0, 0.5], [0.5, 1.0]])
    ft = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    aligned, keep = align_entry(ref, iv, ft)
    assert aligned.shape == (2, 2) and aligned.dtype == np.float32
    np.testing.assert_array_equal(keep, [True, False])
    np.testing.assert_allclose(aligned, [[2.0, 3.0], [0.0, 0.0]])
    empty, keep0 = align_entry(ref, np.zeros((0, 2)), np.zeros((0, 2), np.float32))
    assert not keep0.any() and np.isfinite(empty).all()
    with pytest.raises(ValueError, match="features must be"):
        align_entry(ref, iv, ft[:1])


def test_count_prefix_repairs_a_wrong_guess() -> None:
    from tasks.formats.align import _count_prefix

    rng = np.random.default_rng(5)
    x = np.sort(rng.uniform(0, 10, 50))
    t = rng.uniform(-1, 11, 20)

    def pred(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return x[j] < t[i]

    want = np.searchsorted(x, t, side="left")
    for guess in (want, np.zeros(20), np.full(20, 50), rng.integers(0, 51, 20)):
        np.testing.assert_array_equal(_count_prefix(pred, guess, 50), want)
