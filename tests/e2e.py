"""The tiny demo repository the end-to-end tests share.

One real ``msaflow repro`` (what ``make demo`` runs after installing) on a tiny params set,
in a temporary git copy of this repository; each end-to-end test then works in a copy of
that copy (``clone``), so the DAG is computed once per test session, not once per test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.experiments import set_in_place

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A tiny demo with the two models the README's commands name.
TINY = {
    "demo.n_clips": 8,
    "demo.clips_per_video": 2,
    "demo.size": 64,
    "demo.fps": 8,
    "train.models": ["late_fusion", "fasca_net"],
    "train.seeds": [0],
    "train.max_epochs": 2,
    "train.patience": 2,
    "extract.vision.fps": 4,
    "extract.workers": 1,
    "cache.seq_len.audio": 60,
    "cache.seq_len.vision": 12,
    "robustness.rates": [0.0, 0.5],
    "robustness.levels": [0.0, 0.5],
    "robustness.draws": 1,
}


@dataclass(frozen=True)
class TinyDemo:
    """A git repository after ``msaflow repro``: its path and what the run printed."""

    repo: Path
    output: str


def copy_repo(dst: Path) -> None:
    """This repository's files (tracked, and untracked but not ignored) into ``dst``."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run a command that must succeed; its output names what failed."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def env_for(repo: Path) -> dict:
    """The environment to run the project's tools in ``repo`` with: the venv's bin first,
    the copy's code (not the editable install's), the test session's Prefect home (whose
    shared server every command finds)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo)
    env.pop("PREFECT_API_URL", None)
    return env


def commit_copy(repo: Path) -> dict:
    """Make the copy a git repo with everything committed; the env to run its tools in."""
    env = env_for(repo)
    run(["git", "init", "-q"], repo, env)
    # The repo's own identity: `dvc exp run` commits experiments too, and a fresh machine
    # has no global git user.
    run(["git", "config", "user.name", "t"], repo, env)
    run(["git", "config", "user.email", "t@t"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny"], repo, env)
    return env


def set_params(path: Path, values: dict[str, object]) -> None:
    """Set dotted ``values`` in the params file in place, its comments and layout kept (as
    ``msaflow exp apply`` sets an experiment's)."""
    path.write_text(set_in_place(path.read_text(), values, []))


def build(where: Path) -> TinyDemo:
    """This repository with the TINY params committed, then ``msaflow repro`` run in it."""
    repo = where / "repo"
    repo.mkdir(parents=True)
    copy_repo(repo)
    set_params(repo / "params.yaml", TINY)
    env = commit_copy(repo)
    done = run([str(BIN / "msaflow"), "repro"], repo, env)
    return TinyDemo(repo, done.stdout + done.stderr)


def clone(demo: TinyDemo, dst: Path) -> tuple[Path, dict]:
    """A copy of the tiny demo (git history, DVC cache and workspace) at ``dst``, and the
    env to run its tools in."""
    shutil.copytree(demo.repo, dst, symlinks=True)
    return dst, env_for(dst)


def commands(doc: Path) -> list[str]:
    """The shell commands of a markdown file's ``bash`` blocks (continuations joined,
    comment-only lines dropped)."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            text = line.strip()
            if text and not text.startswith("#"):
                out.append(text)
    return out
