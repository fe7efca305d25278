"""Extraction throughput: seconds of media per wall second, cold and warm, and the cost of a
re-run after one clip is added (the per-clip content-hash cache is the reference it beats:
without it every run would cost as much as the cold one).

    python benchmarks/bench_extract.py [--clips 200] [--workers 2]

Generates a demo corpus of ``--clips + 1`` clips in a temporary folder, ingests it, then
times `tasks.extract.run` (the code the `extract` stage runs) on the first ``--clips``
clips cold, again warm, and once more on all clips.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _params(root: Path, clips: int, workers: int):
    from tasks.params import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dataset"]["root"] = str(root / "data" / "raw" / "demo")
    raw["demo"]["n_clips"] = clips
    raw["extract"]["workers"] = workers
    return parse_params(raw)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from config.paths import Paths
    from tasks import extract, ingest
    from tasks.demo import corpus as demo

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        base = Path(tmp)
        params = _params(base, args.clips + 1, args.workers)
        paths = Paths.from_params(params, base=base)
        demo.generate(params.demo, Path(params.dataset.root), seed=params.seed, progress=False)
        cwd = os.getcwd()
        os.chdir(base)  # stages run at the repo root; the temp folder plays it here
        try:
            ingest.build_manifest(params, Paths.from_params(params))
        finally:
            os.chdir(cwd)
        full = pd.read_csv(paths.manifest, dtype=str, keep_default_na=False)
        # The first N clips, then all N + 1: "a user added one clip".
        full.iloc[: args.clips].to_csv(paths.manifest, index=False)

        rows = []
        for label in ("cold", "warm"):
            start = time.perf_counter()
            summary = extract.run(params, paths)
            rows.append((label, summary, time.perf_counter() - start))
        full.to_csv(paths.manifest, index=False)
        start = time.perf_counter()
        summary = extract.run(params, paths)
        rows.append(("+1 clip", summary, time.perf_counter() - start))

    print(f"\nextraction benchmark: demo corpus, {args.clips} clips, {args.workers} workers")
    header = ("run", "clips", "media s", "wall s", "media s/s", "computed")
    print("{:<8} {:>6} {:>9} {:>8} {:>10} {:>9}".format(*header))
    for label, s, wall in rows:
        computed = s["computed_audio"] + s["computed_vision"] + s["computed_text"]
        print(
            f"{label:<8} {s['clips']:>6} {s['media_seconds']:>9.1f} {wall:>8.2f} "
            f"{s['media_seconds'] / wall:>10.1f} {computed:>9}"
        )
    cold, warm, added = (r[2] for r in rows)
    print(f"warm re-run: {cold / warm:.1f}x faster than cold")
    print(f"re-run after adding one clip: {added:.2f} s ({cold / added:.1f}x faster than cold)")


if __name__ == "__main__":
    main()
