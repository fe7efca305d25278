"""Alignment benchmark: tasks.align vs mmsdk ``mmdataset.align`` (mean collapse).

A generated MOSI-sized set (QUALITY.md): videos x seconds of words (~2.5/s, small gaps),
74-d features at 100 Hz and 35-d at 30 Hz. Each aligner runs in its own spawned process
that first builds the same inputs (same seed), then records ``ru_maxrss`` (RUSAGE_SELF)
before and after aligning: peak memory = the high-water mark's growth during alignment.
Outputs are compared in the parent within 1e-5.

    python benchmarks/bench_align.py                    # full size (mmsdk takes a while)
    python benchmarks/bench_align.py --videos 8 --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPS = 1e-5  # mmsdk HEAD's epsilon (the PyPI release hard-codes 1e-3; patched to match)
STREAMS = {"covarep": (74, 100.0), "facet": (35, 30.0)}


def make_video(seed: int, seconds: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One video: word intervals (ref) and two fixed-hop feature streams."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 3)
    dur = rng.uniform(0.15, 0.45, n)
    gap = rng.uniform(0.0, 0.1, n)
    starts = np.cumsum(dur + gap) - dur
    keep = starts + dur <= seconds
    words = np.stack([starts[keep], (starts + dur)[keep]], 1)
    out = {"words": (words, rng.normal(size=(len(words), 1)).astype(np.float32))}
    for name, (d, hz) in STREAMS.items():
        t = np.arange(int(seconds * hz)) / hz
        out[name] = (np.stack([t, t + 1 / hz], 1), rng.normal(size=(len(t), d)).astype(np.float32))
    return out


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_ours(videos: int, seconds: float, out: str, q: mp.Queue) -> None:
    """Child: align every video with tasks.align; report time and peak-RSS growth."""
    from tasks.formats.align import align_clip

    data = {f"vid{v}": make_video(v, seconds) for v in range(videos)}
    base = _maxrss_mib()
    t0 = time.perf_counter()
    res = {}
    for vid, d in data.items():
        idx, al = align_clip(d["words"][0], {k: d[k] for k in STREAMS}, eps=EPS)
        res[vid] = (idx, al)
    wall = time.perf_counter() - t0
    peak = _maxrss_mib() - base
    arrays = {}
    for vid, (idx, al) in res.items():
        arrays[f"{vid}/idx"] = idx
        for k, a in al.items():
            arrays[f"{vid}/{k}"] = a
    np.savez(out, **arrays)
    q.put((wall, peak, base))


def run_mmsdk(videos: int, seconds: float, out: str, q: mp.Queue) -> None:
    """Child: the same alignment through mmsdk's mmdataset.align with a mean collapse."""
    import mmsdk.mmdatasdk.dataset.dataset as mm_ds
    from mmsdk.mmdatasdk import computational_sequence, mmdataset

    mm_ds.epsilon = EPS
    data = {f"vid{v}": make_video(v, seconds) for v in range(videos)}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        ds = object.__new__(mmdataset)  # __init__ wants .csd paths; build it in memory
        ds.computational_sequences = {}
        for name in ("words", *STREAMS):
            cs = computational_sequence(name)
            cs.setData(
                {vid: {"intervals": d[name][0], "features": d[name][1]}
                 for vid, d in data.items()},
                name,
            )
            ds.computational_sequences[name] = cs
        del data
        base = _maxrss_mib()
        t0 = time.perf_counter()
        ds.align("words", collapse_functions=[lambda i, f: np.average(f, axis=0)])
        wall = time.perf_counter() - t0
        peak = _maxrss_mib() - base
    arrays = {}
    seqs = {k: ds.computational_sequences[k].data for k in ("words", *STREAMS)}
    common = set.intersection(*(set(s) for s in seqs.values()))
    by_vid: dict[str, list[int]] = {}
    for key in common:
        vid, i = key.split("[")
        by_vid.setdefault(vid, []).append(int(i[:-1]))
    for vid, idx in by_vid.items():
        idx.sort()
        arrays[f"{vid}/idx"] = np.array(idx)
        for k in STREAMS:
            arrays[f"{vid}/{k}"] = np.stack([seqs[k][f"{vid}[{i}]"]["features"][0] for i in idx])
    np.savez(out, **arrays)
    q.put((wall, peak, base))


def _child(target, videos: int, seconds: float, out: str) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(videos, seconds, out, q))
    p.start()
    result = q.get()
    p.join()
    if p.exitcode:
        raise RuntimeError(f"{target.__name__} exited with {p.exitcode}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run both aligners, check equality, print wall time and peak memory ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=93)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--mmsdk-videos", type=int, default=None,
                    help="run mmsdk on the first N videos only (ours on both sizes)")
    args = ap.parse_args(argv)
    n_mm = args.mmsdk_videos or args.videos
    with tempfile.TemporaryDirectory() as tmp:
        ours_mm = f"{tmp}/ours_mm.npz"
        w_o, p_o, b_o = _child(run_ours, n_mm, args.seconds, ours_mm)
        w_m, p_m, b_m = _child(run_mmsdk, n_mm, args.seconds, f"{tmp}/mm.npz")
        a, b = np.load(ours_mm), np.load(f"{tmp}/mm.npz")
        assert set(a.files) == set(b.files), "different videos/streams aligned"
        worst = 0.0
        for k in a.files:
            if k.endswith("/idx"):
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            else:
                worst = max(worst, float(np.abs(a[k] - b[k]).max()) if a[k].size else 0.0)
        assert worst <= 1e-5, f"max |ours - mmsdk| = {worst}"
        n_words = sum(len(a[k]) for k in a.files if k.endswith("/idx"))
        print(f"set: {n_mm} videos x {args.seconds:g} s, {n_words} aligned words, "
              f"streams {STREAMS}; eps {EPS}")
        print(f"equal: yes (max abs diff {worst:.2e})")
        print(f"wall  mmsdk {w_m:9.2f} s   ours {w_o:7.3f} s   ratio {w_m / w_o:8.1f}x")
        print(f"peak  mmsdk {p_m:9.1f} MiB ours {p_o:7.1f} MiB ratio {p_o / max(p_m, 1e-9):8.3f}"
              f"  (ru_maxrss growth over the post-input baseline: {b_m:.0f} / {b_o:.0f} MiB)")
        if n_mm != args.videos:
            w_full, p_full, _ = _child(run_ours, args.videos, args.seconds, f"{tmp}/full.npz")
            print(f"ours on all {args.videos} videos: {w_full:.3f} s, peak +{p_full:.1f} MiB; "
                  f"mmsdk extrapolated linearly: {w_m * args.videos / n_mm:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
