"""DVC as the pipeline runs it: ``dvc repro`` / ``dvc exp run`` on the shared Prefect
server, ``dvc commit`` after a flow run, and ``msaflow exp show``'s table.

The CLI calls these, and so do the retrain flow (``dvc repro``) and the whole-pipeline flow
(``dvc commit``): this runtime sits below the flows.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from runtime import server, vega
from runtime.experiments import git


def git_identity_missing() -> list[str]:
    """The git settings an experiment commit needs and this repository lacks."""
    git = shutil.which("git")
    if git is None:
        return ["git"]
    return [key for key in ("user.name", "user.email")
            if not subprocess.run([git, "config", "--get", key], capture_output=True,
                                  text=True).stdout.strip()]


# Where `dvc exp run` runs an experiment; without one of these it runs in the workspace.
EXP_PLACES = ("--temp", "--queue", "--run-all")
WORKSPACE = "--workspace"  # msaflow's own: run in the workspace, as plain `dvc exp run`


def lock_uncommitted(lock: str = "dvc.lock") -> bool:
    """Whether ``lock`` names results that no git commit holds (changed or never committed).

    `dvc exp run` in the workspace and `dvc exp apply` reset git's index to the last commit:
    a dvc.lock that only the index or the working tree held is gone then, and with it the
    only record of which cached artifacts are this machine's results."""
    if not os.path.exists(lock) or shutil.which("git") is None:
        return False
    committed = git("rev-parse", "--verify", "-q", f"HEAD:{lock}").stdout.strip()
    if not committed:
        return True
    return git("hash-object", lock).stdout.strip() != committed


def exp_run_args(dvc_args: list[str]) -> tuple[list[str], list[str]]:
    """`msaflow exp`'s arguments for `dvc exp run`, and what to tell the user about them.

    An experiment runs in a temporary copy (``--temp``) unless the arguments name another
    place (``--queue``, ``--run-all``) or ask for the workspace (``--workspace``): the
    workspace, params.yaml and dvc.lock stay as they are, so no artifact of the current
    results leaves it. A relative ``dataset.root`` is made absolute: the copy runs
    elsewhere."""
    args, notes = list(dvc_args), []
    if WORKSPACE in args:
        args = [a for a in args if a != WORKSPACE]
        notes.append("running in the workspace: params.yaml, dvc.lock and the outputs "
                     "become the experiment's")
    elif not any(a in EXP_PLACES for a in args):
        args.insert(0, "--temp")
        notes.append("running in a temporary copy: the workspace stays as it is (compare: "
                     "`msaflow exp show`; bring the results in: `msaflow exp apply NAME`)")
    for i, arg in enumerate(args[:-1]):
        if arg not in ("-S", "--set-param"):
            continue
        key, sep, value = args[i + 1].partition("=")
        if key.split(":")[-1] == "dataset.root" and sep and value and \
                not os.path.isabs(value) and os.path.exists(value):
            args[i + 1] = f"{key}={os.path.abspath(value)}"
            notes.append(f"dataset.root={value} is relative: using {os.path.abspath(value)}")
    return args, notes


def set_params(dvc_args: list[str]) -> list[str]:
    """The ``-S`` / ``--set-param`` values of params.yaml in `dvc exp run` arguments."""
    found = []
    for i, arg in enumerate(dvc_args):
        if arg in ("-S", "--set-param") and i + 1 < len(dvc_args):
            found.append(dvc_args[i + 1])
        elif arg.startswith("--set-param="):
            found.append(arg.removeprefix("--set-param="))
        elif arg.startswith("-S") and len(arg) > 2:
            found.append(arg[2:])
    return [v for v in found if ":" not in v.partition("=")[0]
            or v.partition("=")[0].startswith("params.yaml:")]


def check_set_params(dvc_args: list[str], params_file: str = "params.yaml") -> None:
    """Every ``-S`` for params.yaml through msaflow's own params check before DVC starts
    (ParamsError naming the key): a typo fails now, not in a stage of the experiment. DVC's
    Hydra forms are understood: ``+key=value`` and ``++key=value`` add or set a key, a
    ``~key`` removes one."""
    from config.errors import ParamsError
    from config.load import read_params
    from config.overrides import parse_assignments
    from tasks.params import parse_params

    items = set_params(dvc_args)
    if not items:
        return
    raw = read_params(params_file)
    for item in items:
        item = item.removeprefix("params.yaml:")
        if item.startswith("~"):
            *parents, leaf = item[1:].partition("=")[0].split(".")
            node = raw
            for part in parents:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(leaf, None)
            continue
        ((key, value),) = parse_assignments([item.lstrip("+")]).items()
        *parents, leaf = key.split(".")
        node = raw
        for i, part in enumerate(parents):
            if not isinstance(node.get(part), dict):
                if not item.startswith("+") or part in node:
                    raise ParamsError(f"-S {item}: {'.'.join(parents[: i + 1])} is not a "
                                      "section of params.yaml")
                node[part] = {}
            node = node[part]
        node[leaf] = value
    parse_params(raw, f"{params_file} with -S {' -S '.join(items)}")


# On Ctrl-C: each signal to dvc's process group, and how long (s) to wait for it to end.
STOP_STEPS = ((signal.SIGINT, 45.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(process: subprocess.Popen, steps=STOP_STEPS) -> int:
    """End ``process`` and every process of its group (dvc and the stage it runs): SIGINT,
    so a stage stops cleanly and stays resumable (training keeps its work/ folder), then
    SIGTERM and SIGKILL for what still runs. Returns the process's exit code."""
    pgid = process.pid
    for sig, seconds in steps:
        process.poll()  # reap dvc, or its zombie would count as alive
        if not _group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                process.poll()
                if not _group_alive(pgid):
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:  # another Ctrl-C: go on to the next signal now
            print("msaflow: stopping faster", flush=True)
    return process.wait()


STAGE_LINE = re.compile(r"^(Running stage|Stage) '([^']+)'( is cached)?")
# DVC's warning, before an experiment runs, for each output it has no hash of yet
NO_HASH = re.compile(r"^WARNING: No file hash info found for '.*'\. It won't be created\.$")


class StageClock:
    """Wall seconds per stage of a dvc run, from the lines dvc prints as it goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.restored: set[str] = set()
        self._current: tuple[str, float] | None = None

    def line(self, text: str, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        match = STAGE_LINE.match(text)
        if match is None:
            return
        self.close(now)
        if match.group(1) == "Running stage":
            self._current = (match.group(2), now)
        elif match.group(3):  # "Stage 'x' is cached - skipping run, checking out outputs"
            self.restored.add(match.group(2))

    def close(self, now: float | None = None) -> None:
        if self._current is not None:
            name, start = self._current
            now = time.perf_counter() if now is None else now
            self.seconds[name] = self.seconds.get(name, 0.0) + now - start
            self._current = None

    def table(self) -> str:
        """The stages that ran, slowest first, with their share of the total."""
        total = sum(self.seconds.values())
        if not total:
            return ""
        rows = [f"{'stage':<28} {'seconds':>8} {'share':>6}"]
        for name, sec in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            rows.append(f"{name:<28} {sec:8.1f} {sec / total:6.1%}")
        rows.append(f"{'stages in all':<28} {total:8.1f}")
        return "\n".join(rows)


def run_dvc(argv: list[str], clock: StageClock | None = None,
            api_url: str | None = None) -> int:
    """Run dvc in its own process group with the current environment (and ``api_url`` as
    its stages' Prefect API); a Ctrl-C ends it and every stage process it started before
    this returns.

    With ``clock``, dvc's output passes through here line by line (unbuffered, so the
    stages' own prints keep their order), timing each stage."""
    env = os.environ.copy()
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    if clock is not None:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(argv, env=env, start_new_session=True,
                               stdout=subprocess.PIPE if clock is not None else None,
                               stderr=subprocess.STDOUT if clock is not None else None,
                               text=True, bufsize=1)
    # `kill` (SIGTERM) stops it the same way as Ctrl-C: dvc runs in its own process group,
    # which a signal to this process alone would not reach.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if clock is not None:
            unmade = 0
            for text in process.stdout:
                if NO_HASH.search(text):  # an output no earlier run made (a new dataset's)
                    unmade += 1
                    continue
                if unmade > 0 and STAGE_LINE.match(text):
                    print(f"msaflow: {unmade} output(s) of this DAG have no earlier result "
                          "here (a new dataset, a new stage): this run makes them")
                    unmade = -1
                clock.line(text)
                sys.stdout.write(text)
                sys.stdout.flush()
            clock.close()
        return process.wait()
    except KeyboardInterrupt:
        print(f"\nmsaflow: interrupted; stopping {os.path.basename(argv[0])} and its stages "
              "(Ctrl-C again to hurry)", flush=True)
        stop_group(process)
        if process.stdout is not None:
            sys.stdout.write(process.stdout.read())
        print("msaflow: stopped; run the same command again to resume", flush=True)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def repro(dvc_args: list[str], command: tuple[str, ...] = ("repro",)) -> int:
    """Run `dvc repro` (or `dvc exp run`) with one Prefect server shared by every stage;
    the exit code."""
    name = " ".join(("dvc", *command))
    if command == ("repro",) and any(a in ("-S", "--set-param") for a in dvc_args):
        print("msaflow repro: `dvc repro` takes no -S; use `msaflow exp -S KEY=VALUE ...` "
              "(= `dvc exp run -S ...`) to run an experiment with changed params")
        return 2
    if command[0] == "exp":
        check_set_params(dvc_args)  # a bad -S fails here, before DVC starts anything
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
    if command[0] == "exp":
        dvc_args, notes = exp_run_args(dvc_args)
        for note in notes:
            print(f"msaflow exp: {note}")
        if lock_uncommitted():
            print("msaflow exp: dvc.lock holds results no commit has; `msaflow exp apply` "
                  "commits them before it brings an experiment in (or now: git add dvc.lock "
                  "reports && git commit -m \"results on this machine\")")
    start = time.perf_counter()
    vega.write_template()  # `dvc plots show` renders offline (once; make install writes it)
    clock = StageClock()
    url = server.ensure()
    print(f"Prefect server: {url.removesuffix('/api')} (open it to watch the stages' flow runs)")
    code = run_dvc([dvc, *command, *dvc_args], clock, api_url=url)
    if clock.seconds:
        print(f"\nWall time per stage (start-up included):\n{clock.table()}")
    print(f"{name} finished in {time.perf_counter() - start:.1f} s (exit {code})")
    if command == ("repro",) and code == 0 and lock_uncommitted():
        print(UNCOMMITTED)
    return code


UNCOMMITTED = """\
dvc.lock now differs from the last commit: these results are this machine's (changed
params or code, or another CPU kind, whose floating point gives slightly other numbers and
so other hashes than the committed ones). They are in DVC's cache; commit them to make them
the baseline that experiments compare with and that a way back returns to:
  git add dvc.lock reports && git commit -m "results on this machine"
Before that, `dvc metrics diff` shows how far they are from the committed figures."""


def record_in_dvc() -> None:
    """Record the artifacts a flow run made in dvc.lock (so `dvc repro` sees them as done)."""
    dvc = shutil.which("dvc")
    if dvc is None:
        print("dvc not on PATH: artifacts written but not recorded in dvc.lock")
        return
    result = subprocess.run([dvc, "commit", "--force", "--quiet"], check=False)
    if result.returncode != 0:
        print(f"dvc commit exited {result.returncode}: dvc.lock not updated")
