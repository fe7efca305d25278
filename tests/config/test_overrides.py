"""``-S KEY=VALUE`` for one run: the same overrides through the CLI and a Prefect flow run."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.errors import ParamsError
from config.overrides import describe, parse_assignments
from msaflow.cli import main as cli_main
from tests.tasks.sources.test_mmsa_pkl import make_pickle

ROOT = Path(__file__).resolve().parents[2]
MSAFLOW = Path(sys.executable).parent / "msaflow"
# The smallest real run of one model on the pickles' 6 / 2 / 2 clips.
QUICK = [
    "train.models=[late_fusion]",
    "train.seeds=[0]",
    "train.max_epochs=2",
    "train.patience=2",
]


def test_parse_assignments_reads_yaml_values() -> None:
    got = parse_assignments([
        "dataset.name=mosi", "cache.seq_len.audio=375", "dataset.label_range=[-1, 1]",
        "extract.fail_fast=true", "dataset.pkl.file=null", "dataset.root=/data/a=b",
        "dataset.csd.word_vectors=",
    ])
    assert got == {
        "dataset.name": "mosi", "cache.seq_len.audio": 375, "dataset.label_range": [-1, 1],
        "extract.fail_fast": True, "dataset.pkl.file": None, "dataset.root": "/data/a=b",
        "dataset.csd.word_vectors": "",
    }
    assert describe(got).startswith("-S dataset.name=mosi -S cache.seq_len.audio=375")
    assert describe(None) == ""


@pytest.mark.parametrize("item", ["dataset.name", "=x", "dataset..name=x", "a.b=[1,"])
def test_parse_assignments_errors_name_the_item(item: str) -> None:
    with pytest.raises(ParamsError, match="-S"):
        parse_assignments([item])


def test_cli_validates_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    params = str(ROOT / "params.yaml")
    assert cli_main(["--params", params, "check", "-S", "dataset.name=mosi"]) == 0
    assert "dataset mosi" in capsys.readouterr().out
    assert cli_main(["--params", params, "check", "-S", "dataset.nme=mosi"]) == 2
    assert "dataset.nme" in capsys.readouterr().err
    assert cli_main(["--params", params, "check", "-S", "train.seeds=seven"]) == 2
    assert "train.seeds" in capsys.readouterr().err
    # dvc repro has no -S: the message points at the command that has
    assert cli_main(["--params", params, "repro", "-S", "dataset.name=x"]) == 2
    assert "msaflow exp -S" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_run_with_overrides_is_a_prefect_flow_run(tmp_path: Path) -> None:
    """`msaflow run -S ...` runs another dataset to its reports, params.yaml untouched: the
    -S items of docs/datasets.md's command for MMSA's processed folder (both variants)."""
    from tests.e2e import commands

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    before = (work / "params.yaml").read_text()
    processed = tmp_path / "MOSI" / "Processed"
    make_pickle(processed / "unaligned_50.pkl")
    make_pickle(processed / "aligned_50.pkl", aligned=True)
    folder = "/data/MOSI/Processed"
    (documented,) = [c for c in commands(ROOT / "docs/datasets.md")
                     if c.endswith(f"dataset.root={folder}")]
    sets = [item.replace(folder, str(processed))
            for item in shlex.split(documented)[2:] if item != "-S"]
    assert sets[:2] == ["dataset.name=mosi", "dataset.source=mmsa_pkl"], documented
    sets += QUICK
    args = [str(MSAFLOW), "run"]
    for item in sets:
        args += ["-S", item]
    started = datetime.now(UTC) - timedelta(minutes=1)
    # On the test session's shared server (PREFECT_API_URL).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    runs = asyncio.run(_flow_run_parameters(started))

    out = proc.stdout + proc.stderr
    assert "not recorded in dvc.lock" in out
    assert (work / "params.yaml").read_text() == before
    metrics = json.loads((work / "reports/mosi/late_fusion/metrics.json").read_text())
    assert {"MAE", "Corr"} <= set(metrics["test"])
    assert "late_fusion" in (work / "reports/summary_mosi.md").read_text()
    # the pickles' 6 / 2 / 2 clips, both variants cached, no .csd written
    assert len((work / "data/interim/mosi/manifest.csv").read_text().splitlines()) == 1 + 10
    assert (work / "data/processed/mosi/aligned.h5").is_file()
    assert not list((work / "data/interim/mosi/csd").glob("*.csd"))
    assert not (work / "data/processed/demo").exists()  # the demo was not needed
    # The server saw one pipeline flow run whose parameters carry the overrides, and every
    # stage subflow got them too: what a person sees (and could set) in the Prefect UI.
    # (The server's database may hold runs of other tests: this run's are the ones whose
    # overrides name this test's folder.)
    ours = [(name, p) for name, p in runs
            if (p.get("overrides") or {}).get("dataset.root") == str(processed)]
    pipeline = [p for name, p in ours if name == "msaflow-pipeline"]
    assert len(pipeline) == 1
    assert pipeline[0]["overrides"]["dataset.name"] == "mosi"
    stages = {name for name, _ in ours}
    assert {"ingest", "extract", "cache", "train", "evaluate", "report"} <= stages


async def _flow_run_parameters(since: datetime) -> list[tuple[str, dict]]:
    """Every flow run created since ``since``, page by page.

    The server answers at most ``PREFECT_API_DEFAULT_LIMIT`` (200) runs per call, and the
    database is shared with every other test that ran a flow: one unfiltered call returns an
    arbitrary 200 of them, which may leave out this test's runs.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime

    recent = FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since))
    runs = []
    async with get_client() as client:
        while page := await client.read_flow_runs(flow_run_filter=recent, limit=200,
                                                  offset=len(runs)):
            runs += page
        names = {fid: (await client.read_flow(fid)).name for fid in {r.flow_id for r in runs}}
    return [(names[r.flow_id], r.parameters) for r in runs]


def test_exp_without_a_git_identity_says_how_to_set_it(tmp_path, monkeypatch, capsys) -> None:
    import subprocess

    from runtime.dvc import repro

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.gitconfig
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(key, raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    shutil.copy(ROOT / "params.yaml", tmp_path / "repo" / "params.yaml")  # -S is checked first
    monkeypatch.chdir(tmp_path / "repo")
    assert repro(["-S", "train.lr=0.1"], ("exp", "run")) == 2
    out = capsys.readouterr().out
    assert "user.name / user.email" in out and 'git config user.name "Your Name"' in out
