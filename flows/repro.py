"""DVC from the flows: ``dvc repro`` / ``dvc exp run`` with one Prefect server, ``dvc commit``.

Below the CLI (msaflow/cli.py calls these; so does the retrain flow), so nothing imports
the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from flows.common import prefect_server


def git_identity_missing() -> list[str]:
    """The git settings an experiment commit needs and this repository lacks."""
    git = shutil.which("git")
    if git is None:
        return ["git"]
    return [key for key in ("user.name", "user.email")
            if not subprocess.run([git, "config", "--get", key], capture_output=True,
                                  text=True).stdout.strip()]


def repro(dvc_args: list[str], command: tuple[str, ...] = ("repro",)) -> int:
    """Run `dvc repro` (or `dvc exp run`) with one Prefect server shared by every stage;
    the exit code."""
    name = " ".join(("dvc", *command))
    if command == ("repro",) and any(a in ("-S", "--set-param") for a in dvc_args):
        print("msaflow repro: `dvc repro` takes no -S; use `msaflow exp -S KEY=VALUE ...` "
              "(= `dvc exp run -S ...`) to run an experiment with changed params")
        return 2
    dvc = shutil.which("dvc")
    if dvc is None:
        print("msaflow: `dvc` not found on PATH (activate the venv: . .venv/bin/activate)")
        return 2
    if command[0] == "exp" and (missing := git_identity_missing()):
        print(f"msaflow exp: `dvc exp run` records each experiment as a git commit, and git "
              f"has no {' / '.join(missing)} here. Set them once, for this repository only:\n"
              '  git config user.name "Your Name"\n  git config user.email you@example.org\n'
              "(or with --global for every repository), then run the experiment again.")
        return 2
    start = time.perf_counter()
    with prefect_server():
        code = subprocess.run([dvc, *command, *dvc_args], env=os.environ.copy()).returncode
    print(f"{name} finished in {time.perf_counter() - start:.1f} s (exit {code})")
    return code


def record_in_dvc() -> None:
    """Record the artifacts a flow run made in dvc.lock (so `dvc repro` sees them as done)."""
    dvc = shutil.which("dvc")
    if dvc is None:
        print("dvc not on PATH: artifacts written but not recorded in dvc.lock")
        return
    result = subprocess.run([dvc, "commit", "--force", "--quiet"], check=False)
    if result.returncode != 0:
        print(f"dvc commit exited {result.returncode}: dvc.lock not updated")
