"""Retrieval-table benchmark: DashFusion's vectorised build at MOSI and MOSEI training sizes.

The authors rebuild the table with Python double loops over all pairs (hours on MOSEI); ours
is chunked matmuls + top-k. Features are the model's (text, vision, audio) utterance vectors,
3 × d_model = 384 dims; labels are rounded sentiment scores (7 groups). First the build is
checked against a direct per-pair loop on a small N, then timed at each size.

    python benchmarks/bench_retrieval.py                       # N = 2,199 and 16,326
    python benchmarks/bench_retrieval.py --sizes 2199 --threads 1 --check-n 100
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.dashfusion.retrieval import build_retrieval_table, sample_pairs  # noqa: E402
from tests.models.oracles import retrieval_table_loop  # noqa: E402

SIZES = (2199, 16326)  # MOSI and MOSEI training splits
DIM = 384  # 3 × d_model
CANDIDATES = 10


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features with some label structure (so same-label neighbours exist) and labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(-3, 4, (n,), generator=g)
    centres = torch.randn(7, DIM, generator=g)
    feats = centres[labels + 3] + 2.0 * torch.randn(n, DIM, generator=g)
    return feats, labels


def check(n: int) -> float:
    """Compare the vectorised build with the loop on ``n`` rows; returns the loop's seconds."""
    feats, labels = make_data(n, seed=1)
    table = build_retrieval_table(feats, labels, candidates=CANDIDATES, chunk=64)
    start = time.perf_counter()
    index, valid = retrieval_table_loop(feats, labels, CANDIDATES)
    elapsed = time.perf_counter() - start
    if not torch.equal(table.valid, valid) or not torch.equal(table.index[valid], index[valid]):
        raise SystemExit(f"mismatch between vectorised and loop tables at N={n}")
    return elapsed


def main() -> None:
    """Check, then time the build at each size and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (QUALITY: 2)")
    ap.add_argument("--chunk", type=int, default=1024, help="anchor rows per matmul")
    ap.add_argument("--check-n", type=int, default=200, help="rows for the loop comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    loop_s = check(args.check_n)
    print(f"check: vectorised == loop on N={args.check_n} (loop {loop_s:.2f} s)")
    print(f"{'N':>7} {'build s':>8} {'rows/s':>9} {'peak RSS MiB':>12} {'draw B=16 ms':>12}")
    for n in args.sizes:
        feats, labels = make_data(n)
        build_retrieval_table(feats[:256], labels[:256], chunk=args.chunk)  # warm-up
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        table = build_retrieval_table(feats, labels, candidates=CANDIDATES, chunk=args.chunk)
        build = time.perf_counter() - start
        rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        rows = torch.randint(0, n, (16,))
        start = time.perf_counter()
        for _ in range(100):
            sample_pairs(table, rows, (2, 2, 2))
        draw_ms = (time.perf_counter() - start) * 10
        print(f"{n:>7} {build:>8.2f} {n / build:>9.0f} {rss:>12.0f} {draw_ms:>12.3f}")


if __name__ == "__main__":
    main()
