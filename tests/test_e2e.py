"""End to end: the real `dvc repro` on a tiny params set, in a temporary copy of the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY = {
    "demo.n_clips": 16,
    "demo.clips_per_video": 2,
    "demo.size": 64,
    "demo.fps": 8,
    "extract.vision.fps": 4,
    "cache.seq_len.audio": 60,
    "cache.seq_len.vision": 12,
    "train.models": ["unimodal_audio", "late_fusion"],
    "train.seeds": [0],
    "train.max_epochs": 2,
    "train.patience": 2,
    "robustness.rates": [0.0, 0.5],
    "robustness.levels": [0.0, 0.5],
    "robustness.draws": 1,
}


def _copy_repo(dst: Path) -> None:
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


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def _commit_copy(repo: Path) -> dict:
    """Make the copy a git repo with everything committed; the env to run its tools in."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo)  # the copy's code, not the editable install's
    env.pop("PREFECT_API_URL", None)
    _run(["git", "init", "-q"], repo, env)
    # The repo's own identity: `dvc exp run` commits experiments too, and a fresh machine
    # has no global git user.
    _run(["git", "config", "user.name", "t"], repo, env)
    _run(["git", "config", "user.email", "t@t"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "tiny"], repo, env)
    return env


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in TINY.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    env = _commit_copy(repo)

    first = _run([str(BIN / "msaflow"), "repro"], repo, env)
    assert "Running stage 'train@late_fusion'" in first.stdout

    # Every stage's artifact is there and well formed.
    for model in TINY["train.models"]:
        metrics = json.loads((repo / f"reports/demo/{model}/metrics.json").read_text())
        assert set(metrics) >= {"valid", "test"}
        assert "MAE" in metrics["test"] and "Corr" in metrics["test"]
        assert (repo / f"reports/demo/{model}/pred_vs_true.png").stat().st_size > 0
        assert (repo / f"data/checkpoints/demo/{model}/seed0.ckpt").is_file()
    summary = (repo / "reports/summary_demo.md").read_text()
    assert "late_fusion" in summary and "demo: robustness (Has0_acc_2" in summary
    assert (repo / "reports/robustness_demo.png").stat().st_size > 0
    # The robustness curves are DVC plots: `dvc plots show` reads them, test split as y.
    shown = json.loads(
        _run([str(BIN / "dvc"), "plots", "show", "--json"], repo, env).stdout)["data"]
    for model in TINY["train.models"]:
        doc = json.loads((repo / f"reports/demo/{model}/robustness.json").read_text())
        metrics = json.loads((repo / f"reports/demo/{model}/metrics.json").read_text())
        assert doc["conditions"]["missing:0"]["test"] == metrics["test"]
        for kind, axis in (("missing", "rate"), ("noise", "level")):
            key = f"reports/demo/{model}/robustness_{kind}.csv"
            (plot,) = shown[key]
            values = plot["content"]["data"]["values"]
            assert [float(v[axis]) for v in values] == [0.0, 0.5]
            assert [float(v["test"]) for v in values] == pytest.approx(
                [doc["conditions"][f"{kind}:{x:g}"]["test"]["Has0_acc_2"] for x in (0, 0.5)],
                abs=1e-5)
    for variant in ("aligned", "unaligned"):
        assert (repo / f"data/processed/demo/{variant}.h5").is_file()
    csds = {p.name for p in (repo / "data/interim/demo/csd").iterdir()}
    assert {"words.csd", "librosa.csd", "facemesh.csd"} <= csds

    # A second repro does nothing.
    second = _run([str(BIN / "dvc"), "repro"], repo, env)
    assert "Running stage" not in second.stdout, second.stdout

    # The same DAG as one Prefect flow run gives the same metrics and leaves DVC's ledger
    # in step (it ends with `dvc commit`): nothing left for `dvc repro` to do.
    before = (repo / "reports/demo/late_fusion/metrics.json").read_text()
    flow = _run([str(BIN / "python"), "-m", "flows.pipeline"], repo, env)
    assert "msaflow-pipeline" in flow.stdout + flow.stderr
    assert json.loads((repo / "reports/demo/late_fusion/metrics.json").read_text()) == (
        json.loads(before)
    )
    status = _run([str(BIN / "dvc"), "status", "--json"], repo, env)
    assert json.loads(status.stdout or "{}") == {}, status.stdout

    # A forced re-run of a finished training stage keeps its up-to-date seeds and outputs.
    forced = _run([str(BIN / "dvc"), "repro", "--force", "--single-item", "train@late_fusion"],
                  repo, env)
    assert "up to date" in forced.stdout + forced.stderr
    assert json.loads(_run([str(BIN / "dvc"), "status", "--json"], repo, env).stdout) == {}

    # Sharing results (docs/scaling.md): push every cached output to a DVC remote (a local
    # folder here; s3://, ssh://... alike); a fresh clone pulls them and has nothing to redo.
    remote = tmp_path / "remote"
    _run([str(BIN / "dvc"), "remote", "add", "-d", "shared", str(remote)], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "results and remote"], repo, env)
    pushed = _run([str(BIN / "dvc"), "push"], repo, env)
    assert "pushed" in pushed.stdout + pushed.stderr and any(remote.rglob("*"))
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    clone_env = dict(env, PYTHONPATH=str(clone))
    _run([str(BIN / "dvc"), "pull"], clone, clone_env)
    assert (clone / "data/checkpoints/demo/late_fusion/seed0.ckpt").read_bytes() == (
        repo / "data/checkpoints/demo/late_fusion/seed0.ckpt").read_bytes()
    assert json.loads(_run([str(BIN / "dvc"), "status", "--json"], clone, clone_env).stdout
                      or "{}") == {}
    again = _run([str(BIN / "dvc"), "repro"], clone, clone_env)
    assert "Running stage" not in again.stdout, again.stdout

    # A training param re-runs only train/evaluate (+ the report that reads them).
    raw["train"]["max_epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], repo, env)
    changed = set(json.loads(status.stdout or "{}"))
    assert changed == {f"train@{m}" for m in TINY["train.models"]}, changed

    # An extractor param re-runs extraction (and, through its outputs, everything after).
    raw["train"]["max_epochs"] = TINY["train.max_epochs"]
    raw["extract"]["vision"]["fps"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], repo, env)
    assert set(json.loads(status.stdout or "{}")) == {"extract"}
