"""Vectorised word-level alignment, equal to mmsdk ``mmdataset.align`` + mean collapse.

mmsdk (``mmsdk/mmdatasdk/dataset/dataset.py``) loops in Python over every word and, for each,
scans every frame of the other sequence. Its semantics, for a reference interval [r0, r1]:

* words with ``|r0 - r1| < eps`` are skipped;
* the other sequence is stably sorted by start; a row [s0, s1] intersects when
  ``r1 - s0 > -eps`` and ``s1 - r0 > -eps``; it is clipped to
  ``[max(s0, r0), min(s1, r1)]`` and kept only if ``|clipped length| > eps``;
* the mean collapse is the plain (unweighted) mean of the kept rows' features;
* a word with no kept row in some sequence exists in that sequence's output only, and
  ``hard_unify`` / ``get_tensors`` then drop it from every sequence.

Here the same result comes from range sums over the sorted frames: when frame ends are
non-decreasing after sorting by start (fixed-hop frames), each word's kept rows are one
contiguous run of the "non-degenerate" frames, whose bounds come from np.searchsorted,
checked against the exact mmsdk predicates (vectorised bisection where rounding differs).
Otherwise a chunked dense mask is used. Memory is linear in frames on the fast path; no
Python loop runs over words or frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# mmsdk HEAD's ``epsilon = 10e-6`` (1e-5); the 0.0.x release on PyPI uses 10e-4.
EPS = 1e-5
# Largest (words x frames) boolean block the general fallback materialises at once.
_DENSE_BLOCK = 1 << 22


def _check(ref: np.ndarray, seq: np.ndarray, feats: np.ndarray) -> None:
    if ref.ndim != 2 or ref.shape[1] != 2:
        raise ValueError(f"reference intervals must be (n, 2), got {ref.shape}")
    if seq.ndim != 2 or seq.shape[1] != 2:
        raise ValueError(f"sequence intervals must be (n, 2), got {seq.shape}")
    if feats.ndim != 2 or feats.shape[0] != seq.shape[0]:
        raise ValueError(
            f"features must be (n, d) with n = {seq.shape[0]} intervals, got {feats.shape}"
        )


def _count_prefix(pred, guess: np.ndarray, n: int) -> np.ndarray:
    """Per reference row, how many leading j in [0, n) satisfy the monotone ``pred``.

    ``guess`` (from np.searchsorted on a float-rounded bound) is verified with the exact
    predicate; only the rows where it is off fall back to a vectorised bisection.
    """
    guess = np.clip(guess, 0, n).astype(np.int64)
    rows = np.arange(guess.shape[0])
    below = guess > 0
    ok = np.ones(guess.shape[0], dtype=bool)
    ok[below] = pred(rows[below], guess[below] - 1)
    above = guess < n
    ok[above] &= ~pred(rows[above], guess[above])
    if ok.all():
        return guess
    bad = rows[~ok]
    lo = np.zeros(bad.shape[0], dtype=np.int64)
    hi = np.full(bad.shape[0], n, dtype=np.int64)
    active = lo < hi
    while active.any():
        mid = (lo + hi) // 2
        p = np.zeros(bad.shape[0], dtype=bool)
        p[active] = pred(bad[active], mid[active])
        lo = np.where(active & p, mid + 1, lo)
        hi = np.where(active & ~p, mid, hi)
        active = lo < hi
    guess[bad] = lo
    return guess


def _fast_sums(
    ref: np.ndarray, s0: np.ndarray, s1: np.ndarray, feats: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of kept rows per word; needs s0, s1 sorted, s1 >= s0, r1 >= r0."""
    n = s0.shape[0]
    r0, r1 = ref[:, 0], ref[:, 1]

    def clipped(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.minimum(s1[j], r1[i]) - np.maximum(s0[j], r0[i])

    # Rows starting before r0 that clip to (almost) nothing: a prefix, because such rows
    # are a prefix by start and their clipped length min(s1, r1) - r0 grows with s1.
    def too_early(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (s0[j] < r0[i]) & (clipped(i, j) <= eps)

    # Rows ending after r1 that clip to (almost) nothing, or start past r1 + eps: a suffix.
    def not_too_late(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return ~((s1[j] > r1[i]) & (clipped(i, j) <= eps))

    lo = _count_prefix(too_early, np.searchsorted(s1, r0 + eps, side="right"), n)
    hi = _count_prefix(not_too_late, np.searchsorted(s0, r1 - eps, side="left"), n)
    hi = np.maximum(hi, lo)
    # Between lo and hi every row lies inside [r0, r1] or clips to > eps, so it is kept iff
    # its own length exceeds eps (a row clipping to > eps is longer than eps itself).
    valid = (s1 - s0) > eps
    counts = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
    counts = counts[hi] - counts[lo]
    x = feats if valid.all() else np.where(valid[:, None], feats, 0)
    sums = np.zeros((ref.shape[0], feats.shape[1]), dtype=np.float64)
    some = np.flatnonzero(hi > lo)
    if some.size:
        # Row-range sums with one reduceat over interleaved [lo, hi) bounds (contiguous rows,
        # no (n, d) prefix-sum table). reduceat needs every index < n, so a range ending at n
        # is summed to n - 1 and its last row added back.
        a, b = lo[some], hi[some]
        at_end = b == n
        b_in = np.where(at_end, n - 1, b)
        bounds = np.empty(2 * some.size, dtype=np.int64)
        bounds[0::2], bounds[1::2] = a, b_in
        part = np.add.reduceat(x, bounds, axis=0, dtype=np.float64)[0::2]
        part[a >= b_in] = 0.0  # reduceat returns x[a] for an empty range
        part[at_end] += x[n - 1]
        sums[some] = part
    return sums, counts


def _dense_sums(
    ref: np.ndarray, s0: np.ndarray, s1: np.ndarray, feats: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Any intervals: the literal mmsdk predicate on (words x frames) blocks, chunked."""
    n_ref, n = ref.shape[0], s0.shape[0]
    sums = np.zeros((n_ref, feats.shape[1]), dtype=np.float64)
    counts = np.zeros(n_ref, dtype=np.int64)
    step = max(1, _DENSE_BLOCK // max(n, 1))
    f64 = feats.astype(np.float64)
    for a in range(0, n_ref, step):
        r0 = ref[a : a + step, 0:1]
        r1 = ref[a : a + step, 1:2]
        hit = ((r1 - s0[None, :]) > -eps) & ((s1[None, :] - r0) > -eps)
        length = np.minimum(s1[None, :], r1) - np.maximum(s0[None, :], r0)
        keep = hit & (np.abs(length) > eps)
        sums[a : a + step] = keep.astype(np.float64) @ f64
        counts[a : a + step] = keep.sum(1)
    return sums, counts


def align_entry(
    ref_intervals: np.ndarray,
    seq_intervals: np.ndarray,
    seq_features: np.ndarray,
    eps: float = EPS,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``seq`` rows over each reference interval: (aligned (n_ref, d) f32, keep)."""
    ref = np.asarray(ref_intervals, dtype=np.float64)
    seq = np.asarray(seq_intervals, dtype=np.float64)
    feats = np.asarray(seq_features)
    _check(ref, seq, feats)
    n_ref, d = ref.shape[0], feats.shape[1]
    # mmsdk skips (near) zero-length reference intervals entirely.
    word_ok = np.abs(ref[:, 0] - ref[:, 1]) >= eps
    sums = np.zeros((n_ref, d), dtype=np.float64)
    counts = np.zeros(n_ref, dtype=np.int64)
    if seq.shape[0] and word_ok.any():
        order = np.argsort(seq[:, 0], kind="stable")  # mmsdk's sorted() by start is stable
        if np.all(order[1:] > order[:-1]):  # already sorted: skip copying the features
            s0, s1, f = seq[:, 0], seq[:, 1], feats
        else:
            s0, s1, f = seq[order, 0], seq[order, 1], feats[order]
        monotone = bool(np.all(s1 >= s0) and np.all(np.diff(s1) >= 0))
        fwd = word_ok & (ref[:, 1] >= ref[:, 0])
        rest = word_ok & ~fwd if monotone else word_ok
        if monotone and fwd.any():
            sums[fwd], counts[fwd] = _fast_sums(ref[fwd], s0, s1, f, eps)
        if rest.any():
            sums[rest], counts[rest] = _dense_sums(ref[rest], s0, s1, f, eps)
    keep = word_ok & (counts > 0)
    aligned = np.zeros((n_ref, d), dtype=np.float32)
    aligned[keep] = sums[keep] / counts[keep, None]
    return aligned, keep


def align_clip(
    ref_intervals: np.ndarray,
    sequences: Mapping[str, tuple[np.ndarray, np.ndarray]],
    eps: float = EPS,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Align every sequence to the words; keep only words every sequence covers (mmsdk)."""
    ref = np.asarray(ref_intervals, dtype=np.float64)
    keep = np.abs(ref[:, 0] - ref[:, 1]) >= eps if ref.ndim == 2 else None
    out: dict[str, np.ndarray] = {}
    for name, (intervals, features) in sequences.items():
        try:
            aligned, ok = align_entry(ref, intervals, features, eps)
        except ValueError as err:
            raise ValueError(f"align {name}: {err}") from None
        out[name] = aligned
        keep = ok if keep is None else keep & ok
    if keep is None:
        raise ValueError(f"reference intervals must be (n, 2), got {ref.shape}")
    idx = np.flatnonzero(keep)
    return idx, {name: a[idx] for name, a in out.items()}
