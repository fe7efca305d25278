"""End to end, as a user who follows the docs: the README's commands, then the datasets'.

In a copy of the tiny demo repository (tests/e2e.py: ``msaflow repro``, what ``make demo``
runs after installing, on a tiny params set), every command of the README's code blocks
and the MELD command of docs/datasets.md, exactly as written but for the data folders
(a tiny generated copy of the official layout, outside the repo, as a user's /data/...
would be). The MMSA-folder command of docs/datasets.md runs, with its own -S items, in
tests/config/test_overrides.py. A README command that this test neither runs nor names as
run elsewhere fails it, so the README cannot show a command nobody ran. The demo's
artifacts never leave the workspace for good: experiments run in temporary copies, and
the documented way back restores every byte.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tasks.sources.mmsa_pkl.reader import load_pickle
from tests.e2e import BIN, ROOT, TinyDemo, clone, commands
from tests.e2e import run as _run
from tests.tasks.features.test_media import make_mp4
from tests.tasks.sources.test_layouts import _make_meld, _meld_rows

# README commands run by other tests (or by CI itself), and where.
ELSEWHERE = {
    "make test": "CI: .ci/run",
    "msaflow retrain --serve": "tests/test_retrain.py::test_serve_alone_registers_the_"
                               "scheduled_deployment",
}


def _bare(command: str) -> str:
    """A command without its trailing comment, for comparisons."""
    return " ".join(shlex.split(command, comments=True))


def _snapshot(repo: Path) -> dict[str, str]:
    """Every file of the workspace that an experiment could touch, by content hash."""
    files = [repo / "params.yaml", repo / "dvc.lock",
             *(p for top in ("data", "reports") for p in (repo / top).rglob("*"))]
    return {str(p.relative_to(repo)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in files if p.is_file()}


def _shell(command: str, repo: Path, env: dict) -> str:
    """Run one documented command line as a new shell would; its output."""
    proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _experiment(repo: Path, env: dict, dataset: str) -> str:
    """The name of the newest experiment run on ``dataset``."""
    shown = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout)
    found = []
    for base in shown:
        for exp in base.get("experiments") or []:
            for rev in exp["revs"]:
                ds = rev["data"]["params"]["params.yaml"]["data"]["dataset"]
                if ds["name"] == dataset:
                    found.append((rev["data"]["timestamp"], rev["name"]))
    assert found, dataset
    return max(found)[1]


@pytest.mark.slow
def test_the_readme_and_the_dataset_commands_as_written(tiny_demo: TinyDemo,
                                                       tmp_path: Path) -> None:
    # MELD.Raw layout: 4 train / 2 dev / 2 test utterances, 1 s 64×64 mp4s.
    mp4 = make_mp4(tmp_path / "clip.mp4", size=(64, 64), fps=8).read_bytes()
    meld = _make_meld(tmp_path / "datasets" / "meld", _meld_rows(), mp4)
    where = {"/data/MELD.Raw": str(meld)}

    repo, env = clone(tiny_demo, tmp_path / "repo")
    env.pop("VIRTUAL_ENV", None)  # a new shell: `source .venv/bin/activate` sets these
    readme = commands(ROOT / "README.md")
    seconds: dict[str, float] = {}

    def run(command: str) -> str:
        for path, here in where.items():
            command = command.replace(path, here)
        start = time.perf_counter()
        out = _shell(command, repo, env)
        seconds[command[:40]] = round(time.perf_counter() - start, 1)
        return out

    # `make demo`: the install (CI's and this test's environment) and `msaflow repro`, which
    # the tiny demo ran. The committed lock is another params set's: the end of the run says
    # so, and how to keep these results as the baseline; the user does what it says.
    assert "dvc.lock now differs from the last commit" in tiny_demo.output, (
        tiny_demo.output[-3000:])
    done: set[str] = {"make demo"}
    # Every command reports to the test session's shared Prefect server (found through its
    # PREFECT_HOME, as a user's commands find theirs).
    (commit,) = [c for c in readme if c.startswith("git add dvc.lock reports")]
    run(commit)
    done.add(commit)
    demo = _snapshot(repo)
    assert "data/checkpoints/demo/fasca_net/seed0.ckpt" in demo

    # `source .venv/bin/activate`: the venv's bin on PATH is what it does here.
    done.add("source .venv/bin/activate")

    # Predict, on videos of the demo corpus (a user's own would do the same).
    clips = sorted((repo / "data/raw/demo/Raw").rglob("*.mp4"))
    shutil.copy(clips[0], repo / "me.mp4")
    (repo / "clips").mkdir()
    with open(repo / "transcripts.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "text"])
        for clip in clips[1:3]:
            shutil.copy(clip, repo / "clips" / clip.name)
            writer.writerow([f"clips/{clip.name}", "it was a good day"])
    for command in [c for c in readme if c.startswith("msaflow predict")]:
        run(command)
        done.add(command)
    me = json.loads((repo / "me.json").read_text())
    assert me["model"] == "fasca_net" and me["videos"] == 1, me
    assert me["predictions"][0]["transcript"] == "I really loved this film", me
    assert (repo / "predictions/demo/late_fusion.json").is_file()

    # The export for MMSA: its pickle, read back by the numpy-only reader.
    for command in [c for c in readme if c.startswith("msaflow export")]:
        run(command)
        done.add(command)
    (pkl,) = (repo / "data/exports/demo/mmsa").glob("unaligned_*.pkl")
    exported = load_pickle(pkl)
    assert len(exported["train"]["id"]) and exported["msaflow"]["variant"] == "unaligned"
    demo = _snapshot(repo)

    # The experiments block, line by line.
    block = [c for c in readme if c.startswith(("msaflow exp ", "dvc exp apply",
                                                "git checkout -- params.yaml"))]
    assert len(block) == 5, block
    for command in block:
        before = _snapshot(repo)
        out = run(command)
        done.add(command)
        if command.startswith("msaflow exp -n"):
            assert "Running stage 'train@late_fusion'" in out, out[-4000:]
            assert "Running stage 'demo'" not in out  # the demo is not recomputed
            # A temporary copy ran it: the workspace, params.yaml included, is as it was.
            assert _snapshot(repo) == before, command
        if command.startswith("msaflow exp -n wide"):  # nothing before training re-ran
            assert "Running stage 'extract'" not in out, out[-4000:]
        if command == "msaflow exp show":
            rows = {r.split("|")[1].strip(): r for r in out.splitlines() if r.startswith("|")}
            assert "models.late_fusion.hidden=128" in rows["wide"], out
            assert "dataset.name=meld" in rows["meld"], out
            assert "—" not in rows["wide"] + rows["meld"], out
        if command.startswith("dvc exp apply"):
            ckpt = "data/checkpoints/demo/late_fusion/seed0.ckpt"
            assert _snapshot(repo)[ckpt] != demo[ckpt]  # the experiment's model
            _check_outputs(repo, "demo")
    # The way back restored every byte of the demo's results.
    assert {k: v for k, v in _snapshot(repo).items() if k in demo} == demo
    assert json.loads(_run([str(BIN / "dvc"), "status", "--json"], repo, env).stdout) == {}
    _check_outputs(repo, "meld", apply=_experiment(repo, env, "meld"))

    print("seconds:", seconds)

    missing = {_bare(c) for c in readme} - {_bare(c) for c in done} - set(ELSEWHERE)
    assert not missing, f"README commands no test runs: {sorted(missing)}"


def _check_outputs(repo: Path, name: str, apply: str | None = None) -> None:
    """The workspace holds ``name``'s cache, checkpoint, metrics and summary (after
    ``dvc exp apply`` of experiment ``apply``, then the way back when given)."""
    env_bin = str(BIN / "dvc")
    if apply is not None:
        subprocess.run([env_bin, "exp", "apply", apply], cwd=repo, check=True,
                       capture_output=True)
    try:
        metrics = json.loads((repo / f"reports/{name}/late_fusion/metrics.json").read_text())
        assert {"valid", "test"} <= set(metrics), (name, metrics)
        assert (repo / f"data/processed/{name}/unaligned.h5").is_file()
        assert (repo / f"data/checkpoints/{name}/late_fusion/seed0.ckpt").is_file()
        assert "late_fusion" in (repo / f"reports/summary_{name}.md").read_text()
        manifest = (repo / f"data/interim/{name}/manifest.csv").read_text().splitlines()
        if name == "meld":  # 7 emotions: classification metrics, every utterance ingested
            assert {"Acc", "F1_weighted"} <= set(metrics["test"]), metrics
            assert 0.0 <= metrics["test"]["Acc"] <= 1.0
            assert len(manifest) == 1 + 8
            csds = {p.name for p in (repo / "data/interim/meld/csd").iterdir()}
            assert {"words.csd", "librosa.csd", "facemesh.csd"} <= csds
        else:  # the demo's [-3, 3] regression scale (MOSI's)
            assert {"MAE", "Corr"} <= set(metrics["test"]), (name, metrics)
            assert metrics["test"]["MAE"] >= 0.0
    finally:
        if apply is not None:  # the documented way back
            subprocess.run(["git", "checkout", "--", "params.yaml", "dvc.lock", "reports"],
                           cwd=repo, check=True, capture_output=True)
            subprocess.run([env_bin, "checkout", "-q"], cwd=repo, check=True,
                           capture_output=True)
