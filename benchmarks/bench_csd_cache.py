"""Source ``csd`` at MOSEI size: manifest + segment cutting, then the HDF5 cache (both variants).

A generated CMU-MOSEI-like set in the official layout (file and root names of the CMU SDK
release): the real MOSEI video ids of the mmsdk standard folds, each video 60-150 s long
with ~7 opinion segments of 5-10 s; words at ~2.5/s with "sp" pause rows, glove 300-d word
vectors on the same intervals, COVAREP 74-d at 100 Hz (a few ``-inf``), FACET 35-d at
30 Hz, labels of 7 columns (sentiment + 6 emotions). Generation streams one video at a time
(one pass per file, per-video seeds), so the generator never holds the dataset either.

Timed, each in its own spawned process: (1) ``csd_manifest`` + ``csd_extract`` and
(2) ``build_cache`` for the unaligned and aligned variants. Peak memory = growth of the
child's peak RSS over its RSS after imports and tokenizer load (VmHWM, reset there).
The same steps run on a quarter-size set (every 4th video); the peak ratio full / quarter
should be ~1: memory bounded per video, not per dataset.

Feature values are float32 rounded to 1/16 so that gzip finds some redundancy (official
files hold float64 measurements); source files use gzip level 1 to keep generation short.

    python benchmarks/bench_csd_cache.py                  # 3,228 videos (~25 min, 2 cores)
    python benchmarks/bench_csd_cache.py --small          # 40 videos, seconds
    python benchmarks/bench_csd_cache.py --videos 800 --dir /big/tmp
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 0
VIDEO_SECONDS = (60.0, 150.0)
SEGMENT_SECONDS = (5.0, 10.0)
WORD_RATE = 2.5  # words per second of speech
PAUSE_FRACTION = 0.12  # share of word rows that are "sp"
DIMS = {"glove": 300, "covarep": 74, "facet": 35, "labels": 7}
RATES = {"covarep": 100.0, "facet": 30.0}
NEG_INF_FRACTION = 0.002  # COVAREP rows with -inf in one column (log of silent frames)
# Official MOSEI file and root names (CMU SDK release).
FILES = {
    "words": ("CMU_MOSEI_TimestampedWords.csd", "words"),
    "glove": ("CMU_MOSEI_TimestampedWordVectors.csd", "glove_vectors"),
    "covarep": ("CMU_MOSEI_COVAREP.csd", "COVAREP"),
    "facet": ("CMU_MOSEI_VisualFacet42.csd", "FACET 4.2"),
    "labels": ("CMU_MOSEI_Labels.csd", "All Labels"),
}
VOCAB = (
    "i really liked this movie but the ending was bad and so it goes to show that you "
    "can not always trust a trailer um uh well actually think pretty good great awful"
).split()


def video_ids(n: int) -> tuple[list[str], str]:
    """The first ``n`` MOSEI standard-fold video ids (sorted) and the folds to use."""
    from tasks.sources.csd import standard_folds

    real = sorted(standard_folds("mosei"))
    if n <= len(real):
        return real[:n], "mosei"
    # More videos than MOSEI has: synthetic ids, split by the seeded video split.
    return [f"synth{i:06d}" for i in range(n)], "none"


def _layout(vid: int, n_segments: int) -> tuple[float, np.ndarray]:
    """Video duration and its segment intervals (cheap; regenerated in every pass)."""
    rng = np.random.default_rng([SEED, vid, 0])
    k = max(1, n_segments + int(rng.integers(-2, 3)))
    lengths = rng.uniform(*SEGMENT_SECONDS, k)
    duration = max(rng.uniform(*VIDEO_SECONDS), lengths.sum() + 2.0)
    gaps = rng.dirichlet(np.ones(k + 1)) * (duration - lengths.sum())
    starts = np.cumsum(gaps[:k]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    return float(duration), np.stack([starts, starts + lengths], 1)


def _word_rows(vid: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Word strings (n, 1) bytes with "sp" pauses, and their intervals."""
    rng = np.random.default_rng([SEED, vid, 1])
    n = int(duration * WORD_RATE * 1.1)
    dur = rng.uniform(0.15, 0.5, n)
    gap = rng.uniform(0.0, 0.05, n)
    starts = np.cumsum(dur + gap) - dur
    keep = starts + dur <= duration
    iv = np.stack([starts[keep], (starts + dur)[keep]], 1)
    words = np.array(VOCAB, dtype="S")[rng.integers(0, len(VOCAB), len(iv))]
    words[rng.random(len(iv)) < PAUSE_FRACTION] = b"sp"
    return words.reshape(-1, 1), iv


def _values(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    # float32 rounded to 1/16: measurements have limited precision, and it lets gzip work
    return np.round(rng.standard_normal((n, d), dtype=np.float32) * 16) / 16


def _frames(duration: float, hz: float) -> np.ndarray:
    t = np.arange(int(duration * hz)) / hz
    return np.stack([t, t + 1 / hz], 1)


def stream_entries(
    stream: str, videos: list[str], indices: list[int], n_segments: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(video_id, features, intervals)`` of one official file, one video at a time."""
    for vid, index in zip(videos, indices, strict=True):
        duration, segments = _layout(index, n_segments)
        rng = np.random.default_rng([SEED, index, 2 + list(FILES).index(stream)])
        if stream in ("words", "glove"):
            words, iv = _word_rows(index, duration)
            feats = words if stream == "words" else _values(rng, len(iv), DIMS["glove"])
            yield vid, feats, iv
        elif stream in RATES:
            iv = _frames(duration, RATES[stream])
            feats = _values(rng, len(iv), DIMS[stream])
            if stream == "covarep":
                rows = rng.random(len(iv)) < NEG_INF_FRACTION
                feats[rows, 0] = -np.inf
            yield vid, feats, iv
        else:
            sentiment = np.round(rng.uniform(-3, 3, len(segments)) * 3) / 3
            emotions = np.round(rng.uniform(0, 3, (len(segments), 6)) * 3) / 3
            yield vid, np.column_stack([sentiment, emotions]).astype(np.float32), segments


def generate(root: Path, videos: list[str], indices: list[int], n_segments: int) -> float:
    """Write the five official files under ``root``; return the seconds it took."""
    from tasks.formats.csd import write_csd

    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for stream, (name, root_name) in FILES.items():
        meta: dict[str, Any] = {"dataset name": "CMU-MOSEI (generated)"}
        if stream in DIMS and stream != "labels":
            meta["dimension names"] = [f"{stream}_{i}" for i in range(DIMS[stream])]
        write_csd(root / name, root_name, stream_entries(stream, videos, indices, n_segments),
                  meta, compression_opts=1)
    return time.perf_counter() - t0


def bench_params(root: Path, folds: str) -> Any:
    """params.yaml with the csd source pointed at the generated MOSEI files."""
    from tasks.params import load_params

    return load_params(
        ROOT / "params.yaml",
        overrides={
            "dataset.name": "mosei_bench",
            "dataset.source": "csd",
            "dataset.root": str(root),
            "dataset.csd.words": FILES["words"][0],
            "dataset.csd.word_vectors": FILES["glove"][0],
            "dataset.csd.audio": FILES["covarep"][0],
            "dataset.csd.vision": FILES["facet"][0],
            "dataset.csd.labels": FILES["labels"][0],
            "dataset.csd.folds": folds,
        },
    )


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _start_peak() -> float:
    """Reset the RSS high-water mark to the current RSS; return that baseline (MiB).

    Linux ``clear_refs`` 5 resets VmHWM. Without it, the transient peak of the imports
    (torch, transformers) would hide a smaller working set: ru_maxrss growth would read 0.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def _peak_growth(base: float) -> float:
    """Peak RSS (VmHWM) since ``_start_peak`` minus the RSS then (MiB)."""
    return _status_mib("VmHWM") - base


def run_extract(root: str, base: str, folds: str, q: mp.Queue) -> None:
    """Child: csd_manifest + csd_extract; report wall, peak growth, baseline and summaries."""
    from config.paths import Paths
    from models.text_encoders import load_tokenizer
    from tasks.sources import csd as sources

    params = bench_params(Path(root), folds)
    paths = Paths.from_params(params, base=base)
    load_tokenizer(params.extract.text.tokenizer)  # a fixed cost, not per-video memory
    rss0 = _start_peak()
    t0 = time.perf_counter()
    ingest = sources.csd_manifest(params, paths)
    t1 = time.perf_counter()
    extract = sources.csd_extract(params, paths)
    t2 = time.perf_counter()
    q.put({"manifest_s": t1 - t0, "extract_s": t2 - t1, "peak": _peak_growth(rss0),
           "base": rss0, "ingest": ingest, "extract": extract})


def run_cache(root: str, base: str, folds: str, q: mp.Queue) -> None:
    """Child: build_cache for both variants (unaligned, aligned) in one call."""
    from config.paths import Paths
    from tasks.cache import build_cache

    params = bench_params(Path(root), folds)
    if list(params.cache.variants) != ["unaligned", "aligned"]:
        params = params.model_copy(update={"cache": params.cache.model_copy(
            update={"variants": ["unaligned", "aligned"]})})
    paths = Paths.from_params(params, base=base)
    rss0 = _start_peak()
    t0 = time.perf_counter()
    summary = build_cache(params, paths)
    q.put({"cache_s": time.perf_counter() - t0, "peak": _peak_growth(rss0), "base": rss0,
           "summary": {k: v for k, v in summary.items() if k not in ("missing", "bad")},
           "sizes": {v: paths.h5(v).stat().st_size for v in ("unaligned", "aligned")}})


def _child(target: Any, *args: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    try:
        result = q.get()
    except BaseException:
        p.terminate()
        raise
    p.join()
    if p.exitcode:
        raise RuntimeError(f"{target.__name__} exited with {p.exitcode}")
    return result


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _gib(n: int) -> str:
    return f"{n / 2**30:6.2f} GiB"


def run_size(work: Path, n_videos: int, every: int, n_segments: int) -> dict[str, Any]:
    """Generate a set (every ``every``-th of the first ``n_videos * every`` ids), time it."""
    ids, folds = video_ids(n_videos * every)
    indices = list(range(0, len(ids), every))
    videos = [ids[i] for i in indices]
    src, base = work / "source", work / "out"
    gen_s = generate(src, videos, indices, n_segments)
    ex = _child(run_extract, str(src), str(base), folds)
    ca = _child(run_cache, str(src), str(base), folds)
    csd_dir = next(base.rglob("csd"))
    out = {"videos": len(videos), "gen_s": gen_s, "extract": ex, "cache": ca,
           "source_bytes": _du(src), "csd_bytes": _du(csd_dir),
           "source_seconds": sum(_layout(i, n_segments)[0] for i in indices)}
    shutil.rmtree(work)
    return out


def report(r: dict[str, Any]) -> None:
    """Print one size's figures."""
    ex, ca = r["extract"], r["cache"]
    ing, ext, cs = ex["ingest"], ex["extract"], ca["summary"]
    print(f"  {r['videos']} videos, {r['source_seconds'] / 3600:.1f} h of video, "
          f"{ing['clips']} segments (train/valid/test {ing['train_clips']}/"
          f"{ing['valid_clips']}/{ing['test_clips']}), dropped {ing['dropped']}")
    print(f"  generate official files   {r['gen_s']:8.1f} s   source {_gib(r['source_bytes'])}")
    print(f"  csd_manifest              {ex['manifest_s']:8.1f} s")
    print(f"  csd_extract               {ex['extract_s']:8.1f} s   our .csd "
          f"{_gib(r['csd_bytes'])}   failed {ext['failed_clips']}, "
          f"non-finite covarep {ext.get('nonfinite_covarep', 0)}")
    print(f"     peak RSS growth        {ex['peak']:8.1f} MiB (baseline {ex['base']:.0f} MiB)")
    print(f"  build_cache (both)        {ca['cache_s']:8.1f} s   unaligned "
          f"{_gib(ca['sizes']['unaligned'])}, aligned {_gib(ca['sizes']['aligned'])}, "
          f"clips {cs['clips']}, aligned without words {cs.get('aligned_without_words')}")
    print(f"     peak RSS growth        {ca['peak']:8.1f} MiB (baseline {ca['base']:.0f} MiB)")
    per_video = (ex["extract_s"] + ca["cache_s"]) / r["videos"]
    print(f"  extract + cache per video {per_video * 1000:8.1f} ms")


def main(argv: list[str] | None = None) -> int:
    """Run the full and the quarter-size set; print figures and the memory-bound ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=3228, help="videos (MOSEI: 3,228)")
    ap.add_argument("--segments", type=int, default=7, help="mean segments per video")
    ap.add_argument("--dir", type=Path, default=None, help="temp folder (default: system)")
    ap.add_argument("--small", action="store_true", help="40 videos: a quick smoke run")
    args = ap.parse_args(argv)
    n = 40 if args.small else args.videos
    if n < 4 or args.segments < 1:
        ap.error("--videos must be >= 4 and --segments >= 1")
    quarter = max(1, n // 4)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_csd_") as tmp:
        # The quarter set first (every 4th id, same splits mix), then the full set; each is
        # deleted before the next, so disk holds one set at a time.
        for name, size, every in (("quarter", quarter, 4), ("full", n, 1)):
            results[name] = run_size(Path(tmp) / name, size, every, args.segments)
            print(f"{name}:")
            report(results[name])
            sys.stdout.flush()
    full, q = results["full"], results["quarter"]
    for step in ("extract", "cache"):
        ratio = full[step]["peak"] / max(q[step]["peak"], 1e-9)
        print(f"memory bound ({step}): peak {full[step]['peak']:.1f} MiB at {full['videos']} "
              f"videos vs {q[step]['peak']:.1f} MiB at {q['videos']}: ratio {ratio:.2f} "
              f"(videos x{full['videos'] / q['videos']:.1f})")
    t_full = full["extract"]["extract_s"] + full["cache"]["cache_s"]
    t_q = q["extract"]["extract_s"] + q["cache"]["cache_s"]
    print(f"time scaling: extract + cache {t_full:.1f} s vs {t_q:.1f} s: ratio "
          f"{t_full / t_q:.2f} (videos x{full['videos'] / q['videos']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
