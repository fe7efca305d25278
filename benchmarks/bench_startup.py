"""Start-up: wall time of the commands a user types, each a fresh process, against
``python -c "import torch"`` measured in the same run (the yardstick).

    python benchmarks/bench_startup.py [--repeat 3] [--repo .] [--model fasca_net]

Measured (medians of ``--repeat`` runs, each command in a new process, from ``--repo``,
whose ``.venv`` runs them; ``make demo`` must have run there, for the checkpoints):

- ``msaflow --help``, ``msaflow check``;
- a stage that trains nothing: ``msaflow report`` with the shared Prefect server up (the
  server is started by an untimed first run), its own work timed in-process apart, so
  the table gives what the command spends beyond its work;
- ``msaflow predict`` of one demo clip with ``--text``, with **no** Prefect server running
  before: the server is stopped before each run (outside the timing), its database kept,
  as after a reboot or ``msaflow server stop``; and once in a ``PREFECT_HOME`` never used
  before, where the server's first start also creates its database.

``--repo`` lets one run time another checkout (e.g. an older commit in a git worktree with
its own ``.venv``) against the same yardstick.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = "I really loved this film, it was great"

# The report stage's work, timed inside one process after its imports (so only the work).
WORK = r"""
import sys, time
sys.path.insert(0, ".")
try:
    from tasks.stages import get
    from tasks.params import load_params
    from config.paths import Paths
    stage = get("report")
    params = load_params("params.yaml"); paths = Paths.from_params(params)
    work = stage.function()
    call = lambda: work(params, paths)
except ImportError:  # a checkout from before the stage table
    from msaflow.params import load_params
    from msaflow.paths import Paths
    from tasks.evaluate import summarize
    params = load_params("params.yaml"); paths = Paths.from_params(params)
    call = lambda: summarize(params, paths)
call()  # warm: first-call imports inside the work
t = time.perf_counter(); call(); print(time.perf_counter() - t)
"""


def _env(prefect_home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    if prefect_home is not None:
        env["PREFECT_HOME"] = str(prefect_home)
    return env


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return took


def _stop_servers(home: Path, venv_bin: Path, cwd: Path) -> None:
    """Stop the shared server a run left under ``home`` (``msaflow server stop``, where the
    checkout has it; an older one's temporary servers end with their command)."""
    subprocess.run([str(venv_bin / "msaflow"), "server", "stop"], cwd=cwd, env=_env(home),
                   capture_output=True)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--model", default="fasca_net")
    args = parser.parse_args()
    repo = args.repo.resolve()
    bin_ = repo / ".venv" / "bin"
    python, msaflow = str(bin_ / "python"), str(bin_ / "msaflow")
    clips = sorted((repo / "data" / "raw" / "demo" / "Raw").rglob("*.mp4"))
    if not clips or not (repo / "data" / "checkpoints" / "demo" / args.model).is_dir():
        sys.exit(f"{repo}: run `make demo` there first (demo clips and checkpoints needed)")
    clip = str(clips[0])
    figures: dict[str, list[float]] = {}
    home = Path(tempfile.mkdtemp(prefix="bench-startup-home-"))
    try:
        shared = _env(home)
        # untimed: a shared server where the checkout has one (its database made); caches
        # warm
        _time([msaflow, "report"], repo, shared)
        work = []
        for _ in range(args.repeat):
            figures.setdefault('python -c "import torch"', []).append(
                _time([python, "-c", "import torch"], repo, shared))
            figures.setdefault("msaflow --help", []).append(
                _time([msaflow, "--help"], repo, shared))
            figures.setdefault("msaflow check", []).append(
                _time([msaflow, "check"], repo, shared))
            figures.setdefault("msaflow report (stage, shared server)", []).append(
                _time([msaflow, "report"], repo, shared))
            out = subprocess.run([python, "-c", WORK], cwd=repo, env=shared,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"timing the report's work failed:\n{out.stderr[-3000:]}")
            work.append(float(out.stdout.strip().splitlines()[-1]))
            _stop_servers(home, bin_, repo)
            with tempfile.TemporaryDirectory() as tmp:
                figures.setdefault("msaflow predict 1 clip --text (no server before)",
                                   []).append(_time(
                    [msaflow, "predict", clip, "--model", args.model, "--text", TEXT,
                     "--out", str(Path(tmp) / "p.json")], repo, shared))
        fresh = Path(tempfile.mkdtemp(prefix="bench-startup-fresh-"))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                figures["msaflow predict, a PREFECT_HOME never used (once)"] = [_time(
                    [msaflow, "predict", clip, "--model", args.model, "--text", TEXT,
                     "--out", str(Path(tmp) / "p.json")], repo, _env(fresh))]
        finally:
            _stop_servers(fresh, bin_, repo)
            shutil.rmtree(fresh, ignore_errors=True)
    finally:
        _stop_servers(home, bin_, repo)
        shutil.rmtree(home, ignore_errors=True)

    torch_s = statistics.median(figures['python -c "import torch"'])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                            capture_output=True, text=True).stdout.strip()
    print(f"repo {repo} at {commit}; medians of {args.repeat}; clip {Path(clip).name}")
    print(f"{'command':<52} {'median s':>9} {'x import torch':>15}")
    for name, runs in figures.items():
        med = statistics.median(runs)
        print(f"{name:<52} {med:9.2f} {med / torch_s:15.2f}")
    work_s = statistics.median(work)
    beyond = statistics.median(figures["msaflow report (stage, shared server)"]) - work_s
    print(f"{'  report: its work alone (in-process)':<52} {work_s:9.2f}")
    print(f"{'  report: beyond its work':<52} {beyond:9.2f}")
    print(json.dumps({k: [round(v, 3) for v in vs] for k, vs in figures.items()}))


if __name__ == "__main__":
    main()
