"""`msaflow exp`: where an experiment runs, the uncommitted-results guard, `exp show`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.dvc import exp_run_args, lock_uncommitted
from runtime.experiments import (
    exp_rows,
    exp_table,
    experiments,
    find,
    hint,
    holding,
    set_in_place,
    show_args,
)


def test_an_experiment_runs_in_a_temporary_copy_unless_told_otherwise() -> None:
    args, notes = exp_run_args(["-S", "train.lr=0.1", "-n", "lr"])
    assert args == ["--temp", "-S", "train.lr=0.1", "-n", "lr"]
    assert "temporary copy" in notes[0]
    for place in ("--queue", "--temp", "--run-all"):
        assert exp_run_args([place, "-S", "a=1"])[0] == [place, "-S", "a=1"]
    args, notes = exp_run_args(["--workspace", "-S", "a=1"])
    assert args == ["-S", "a=1"] and "workspace" in notes[0]


def test_a_relative_dataset_root_is_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "MELD.Raw").mkdir()
    args, notes = exp_run_args(["-S", "dataset.root=MELD.Raw", "--set-param",
                                "dataset.root=missing", "-S", "dataset.name=meld"])
    assert args[2] == f"dataset.root={tmp_path / 'MELD.Raw'}"
    assert args[4] == "dataset.root=missing"  # validation names what does not exist
    assert args[6] == "dataset.name=meld"
    assert any("relative" in n for n in notes)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_lock_uncommitted_tells_this_machines_results_from_the_commit(tmp_path,
                                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.name", "t")
    _git(tmp_path, "config", "user.email", "t@t")
    assert not lock_uncommitted()  # no dvc.lock: nothing to keep
    Path("dvc.lock").write_text("schema: '2.0'\n")
    assert lock_uncommitted()  # never committed
    _git(tmp_path, "add", "dvc.lock")
    assert lock_uncommitted()  # staged only: `dvc exp apply` resets the index
    _git(tmp_path, "commit", "-qm", "lock")
    assert not lock_uncommitted()
    Path("dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert lock_uncommitted()


def _rev(name: str, params: dict, metrics: dict, rev: str = "0123456789") -> dict:
    return {"rev": rev, "name": name, "error": None, "data": {
        "params": {"params.yaml": {"data": params}},
        "metrics": {path: {"data": value} for path, value in metrics.items()}}}


def test_exp_show_table_names_the_changed_params_and_each_models_metric() -> None:
    demo = {"dataset": {"name": "demo"}, "train": {"lr": 0.001}}
    demo_metrics = {"reports/headline_demo/late_fusion.json": {"test": {"MAE": 0.6421}},
                    "reports/headline_demo/fasca_net.json": {"test": {"MAE": 0.5721}}}
    workspace = _rev("workspace", demo, demo_metrics, rev="workspace")
    workspace["name"] = None
    head = _rev("main", demo, {})
    head["experiments"] = [{"name": "meld", "revs": [_rev(
        "meld-run", {"dataset": {"name": "meld"}, "train": {"lr": 0.001}},
        {"reports/headline_meld/late_fusion.json": {"test": {"F1_weighted": 0.41,
                                                             "Acc": 0.5}}})]}]
    # an experiment of an earlier commit: its changes are against that commit's params
    old = _rev("abc1234", {"dataset": {"name": "demo"}, "train": {"lr": 0.01}}, {},
               rev="abc1234def")
    old["name"] = None
    old["experiments"] = [{"name": "slow", "revs": [_rev(
        "slow", {"dataset": {"name": "demo"}, "train": {"lr": 0.002}},
        {"reports/headline_demo/late_fusion.json": {"test": {"MAE": 0.7}}})]}]
    rows = exp_rows([workspace, head, old])
    assert [r["name"] for r in rows] == ["workspace", "main", "meld-run", "abc1234", "slow"]
    table = exp_table(rows).splitlines()
    assert table[0] == "| experiment | changed params | late_fusion | fasca_net |"
    assert table[2] == "| workspace |  | 0.642 | 0.572 |"
    assert table[3] == "| main |  | — | — |"  # no committed metrics there
    assert table[4] == "| └ meld-run | dataset.name=meld | F1_weighted 0.410 | — |"
    assert table[5] == "| abc1234 | train.lr=0.01 | — | — |"
    assert table[6] == "| └ slow | train.lr=0.002 | 0.700 | — |"


PARAMS = """# the project's knobs
dataset:
  name: demo                  # names the folders
  label_range: [-3.0, 3.0]    # [low, high]
train:
  models: [late_fusion, fasca_net]
  lr: 0.001                   # learning rate
  seeds:
  - 0
"""


def test_params_are_set_in_place_with_their_comments_and_layout() -> None:
    text = set_in_place(PARAMS, {"dataset.name": "meld", "train.models": ["late_fusion"],
                                 "train.seeds": [0, 1], "train.extra.depth": 2}, [])
    assert text == PARAMS.replace("name: demo  ", "name: meld  ").replace(
        "models: [late_fusion, fasca_net]", "models: [late_fusion]").replace(
        "  - 0\n", "  - 0\n  - 1\n") + "  extra:\n    depth: 2\n"
    assert set_in_place(PARAMS, {}, ["train.lr"]) == PARAMS.replace(
        "  lr: 0.001                   # learning rate\n", "")


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


LOCK = """schema: '2.0'
stages:
  train@late_fusion:
    cmd: msaflow train late_fusion
    outs:
    - path: data/checkpoints/{ds}/late_fusion
      hash: md5
"""


def test_an_artifact_only_an_experiment_made_is_found_with_the_command_to_bring_it_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Experiments are git commits under refs/exps/<baseline>/<name> (as `dvc exp run`
    records them): the one whose dvc.lock has the path is named, with `msaflow exp apply`."""
    monkeypatch.chdir(tmp_path)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.name", "t")
    _git(tmp_path, "config", "user.email", "t@t")
    base = _commit(tmp_path, {"dvc.lock": LOCK.format(ds="demo")}, "baseline")
    exp = _commit(tmp_path, {"dvc.lock": LOCK.format(ds="myvids")}, "experiment")
    _git(tmp_path, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/myvids", exp)
    _git(tmp_path, "reset", "-q", "--hard", base)
    assert [(e.name, e.sha, e.baseline) for e in experiments()] == [("myvids", exp, base)]
    assert find("myvids").sha == exp and find(exp[:8]).name == "myvids"
    assert holding("data/checkpoints/myvids/late_fusion") == ["myvids"]
    assert holding("data/checkpoints/myvids/late_fusion/seed0.ckpt") == ["myvids"]
    assert holding("data/checkpoints/demo/late_fusion") == []  # the baseline's, not an exp's
    assert hint("data/checkpoints/myvids/late_fusion") == (
        "experiment 'myvids' made it: bring it into the workspace with "
        "`msaflow exp apply myvids`")
    assert hint("data/checkpoints/other/late_fusion") == ""
    # `msaflow exp show` asks DVC for HEAD's experiments and each other baseline's
    assert show_args([]) == []  # HEAD's own experiments: DVC's default
    _commit(tmp_path, {"README": "x"}, "later")
    assert show_args([]) == ["--rev", "HEAD", "--rev", base]
    assert show_args(["-A"]) == ["-A"]


@pytest.mark.parametrize("shown", [[], [{"rev": "workspace", "name": None, "data": None,
                                        "error": {"msg": "x"}}]])
def test_exp_show_table_copes_with_nothing_and_errors(shown) -> None:
    text = exp_table(exp_rows(shown))
    assert text == "no experiments" or "workspace (error)" in text


SLEEPER = """\
import os, sys, time
open("stage.pid", "w").write(str(os.getpid()))
try:
    for _ in range(30):
        time.sleep(0.1)
except KeyboardInterrupt:  # a stage's own clean stop (msaflow's CLI does the same)
    sys.exit(130)
open("out.txt", "w").write("done")
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for good: only its parent has not collected its exit code yet
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_ctrl_c_ends_dvc_and_the_stage_and_the_rerun_works(tmp_path: Path, how: str) -> None:
    """Ctrl-C (SIGINT to the foreground process group) during `msaflow repro`: dvc and the
    stage process it runs end, no process is left behind, and the next run completes."""
    import json
    import signal
    import sys
    import time

    bin_dir = Path(sys.executable).parent
    _git(tmp_path, "init", "-q")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_API_URL": "http://127.0.0.1:9/api",  # no server is started for a plain stage
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([str(bin_dir / "dvc"), "init", "-q"], cwd=tmp_path, env=env, check=True)
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  sleep:\n    cmd: python sleeper.py\n    deps: [sleeper.py]\n"
        "    outs: [out.txt]\n")
    runner = [sys.executable, "-c", "import sys; from runtime.dvc import repro; "
              "sys.exit(repro([]))"]
    # A terminal's Ctrl-C goes to its foreground process group: the runner's own here.
    proc = subprocess.Popen(runner, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = tmp_path / "stage.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    stage = int(pid_file.read_text())
    dvc = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
           and _cmdline(d).endswith("dvc repro") and int(d.name) != proc.pid]
    if how == "ctrl-c":  # a terminal's Ctrl-C: SIGINT to the whole foreground group
        os.killpg(proc.pid, signal.SIGINT)
    else:  # `kill PID`: SIGTERM to msaflow alone
        os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out
    assert "interrupted; stopping dvc and its stages" in out and "Traceback" not in out, out
    assert not _alive(stage), out
    assert dvc and not any(_alive(p) for p in dvc), (dvc, out)
    assert not (tmp_path / "out.txt").exists()
    # The rerun is not blocked by a stale lock and finishes the stage.
    pid_file.unlink()
    done = subprocess.run(runner, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out.txt").read_text() == "done"
    status = subprocess.run([str(bin_dir / "dvc"), "status", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    assert json.loads(status.stdout or "{}") == {}


def test_the_stage_clock_times_each_stage_dvc_runs() -> None:
    from runtime.dvc import StageClock

    clock = StageClock()
    for now, text in [(0.0, "Running stage 'demo':\n"), (1.0, "> msaflow demo\n"),
                      (5.0, "Stage 'ingest' is cached - skipping run, checking out outputs\n"),
                      (5.5, "Running stage 'train@late_fusion':\n"),
                      (6.0, "Stage 'evaluate@late_fusion' didn't change, skipping\n")]:
        clock.line(text, now)
    clock.close(9.0)
    assert clock.seconds == {"demo": 5.0, "train@late_fusion": 0.5}
    assert clock.restored == {"ingest"}
    lines = clock.table().splitlines()
    assert lines[1].split() == ["demo", "5.0", "90.9%"]
    assert lines[-1].split()[-1] == "5.5"
