"""Scale-out, measured: extraction on threads against a local Dask cluster of 1 and 2
worker processes, and DDP training with 2 CPU processes against 1.

    python benchmarks/bench_scale.py [--clips 24] [--epochs 3] [--train-clips 480]

Extraction: the first ``--clips`` clips of the demo corpus (run ``make demo`` first, or any
``msaflow demo``) through the real ``msaflow extract`` command in a scratch project, cold
(an empty per-clip cache) each time: threads (``extract.workers: 2``), then
``extract.runner: dask`` with 1 and with 2 workers. Printed: media seconds per wall second of
the extraction itself (the stage's own figure; for Dask it includes each worker's first
imports), the command's whole wall time (Prefect, the cluster's start), and whether the
``.csd`` bytes equal the thread runner's.

Training: ``late_fusion`` on a generated cache of ``--train-clips`` clips with the demo's
shapes, ``--epochs`` epochs through the `train` stage's code, in one process and with
``train.strategy: ddp`` over 2 processes (gloo); samples per second of the whole fit.
Ratios are against the first row of each table, measured in the same run.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MSAFLOW = str(Path(sys.executable).parent / "msaflow")


def _extract_project(tmp: Path, clips: int) -> Path:
    manifest = ROOT / "data/interim/demo/manifest.csv"
    if not manifest.is_file():
        sys.exit(f"{manifest} is missing: run `make demo` (or `msaflow demo && msaflow ingest`)")
    rows = pd.read_csv(manifest, keep_default_na=False).head(clips)
    rows["media"] = [str((ROOT / m).resolve()) for m in rows["media"]]
    proj = tmp / "extract"
    (proj / "data/interim/bench").mkdir(parents=True)
    rows.to_csv(proj / "data/interim/bench/manifest.csv", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dataset"].update(name="bench", root=str(ROOT / "data/raw/demo"))
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return proj


def _extract(proj: Path, *sets: str) -> tuple[dict, float, dict[str, bytes]]:
    shutil.rmtree(proj / "data/interim/bench/extract_cache", ignore_errors=True)
    shutil.rmtree(proj / "data/interim/bench/csd", ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PREFECT_API_URL", None)
    args = [MSAFLOW, "extract"] + [x for s in sets for x in ("-S", s)]
    start = time.perf_counter()
    run = subprocess.run(args, cwd=proj, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{(run.stdout + run.stderr)[-3000:]}")
    line = next(x for x in (run.stdout + run.stderr).splitlines() if "extract: {" in x)
    summary = ast.literal_eval(line[line.index("{"):])
    csd = {p.name: p.read_bytes() for p in (proj / "data/interim/bench/csd").glob("*.csd")}
    return summary, wall, csd


def _train(tmp: Path, n: int, epochs: int, ddp: bool) -> tuple[float, float]:
    from config.paths import Paths
    from tasks.params import load_params
    from tasks.train import train_model
    from tests.synthetic import make_h5

    over = {"train.models": ["late_fusion"], "train.seeds": [0], "train.max_epochs": epochs,
            "train.patience": epochs, "train.accelerator": "cpu"}
    if ddp:
        over.update({"train.devices": 2, "train.strategy": "ddp"})
    params = load_params(ROOT / "params.yaml", over)
    paths = Paths.from_params(params, base=tmp / ("ddp" if ddp else "single"))
    make_h5(paths.h5("unaligned"), n=(n, n // 4, n // 4),
            dims={"words": 384, "audio": 33, "vision": 137},
            seq_len={"tokens": 48, "words": 24, "audio": 100, "vision": 24})
    start = time.perf_counter()
    train_model(params, paths, "late_fusion")
    wall = time.perf_counter() - start
    return wall, n * epochs / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-clips", type=int, default=480)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proj = _extract_project(Path(tmp), args.clips)
        runs = (("threads, 2 workers", ("extract.runner=threads", "extract.workers=2")),
                ("dask local, 1 worker", ("extract.runner=dask", "extract.workers=1")),
                ("dask local, 2 workers", ("extract.runner=dask", "extract.workers=2")))
        reference = None
        for label, sets in runs:
            summary, wall, csd = _extract(proj, *sets)
            reference = reference or csd
            rows.append((label, summary, wall, csd == reference))
            print(f"  {label}: {summary['throughput']:.2f} media s / wall s", flush=True)
        training = []
        for ddp in (False, True):
            wall, rate = _train(Path(tmp), args.train_clips, args.epochs, ddp)
            training.append(("ddp, 2 processes (gloo)" if ddp else "1 process", wall, rate))
    media = rows[0][1]["media_seconds"]
    print(f"\nextraction of {args.clips} demo clips ({media:.1f} s of media), cold, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'runner':<24} {'media s/wall s':>15} {'ratio':>7} {'extract s':>10} "
          f"{'command s':>10} {'same .csd bytes':>16}")
    base = rows[0][1]["throughput"]
    for label, summary, wall, same in rows:
        print(f"{label:<24} {summary['throughput']:>15.2f} {summary['throughput'] / base:>6.2f}x "
              f"{summary['wall_seconds']:>10.1f} {wall:>10.1f} {'yes' if same else 'NO':>16}")
    print(f"\nlate_fusion, {args.train_clips} train clips × {args.epochs} epochs (whole fit, "
          "start-up included)")
    print(f"{'training':<24} {'samples/s':>10} {'ratio':>7} {'wall s':>8}")
    for label, wall, rate in training:
        print(f"{label:<24} {rate:>10.0f} {rate / training[0][2]:>6.2f}x {wall:>8.1f}")


if __name__ == "__main__":
    main()
