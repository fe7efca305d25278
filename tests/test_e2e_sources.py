"""End to end: the real `dvc exp run -S ...` for the raw MELD, csd and mmsa_pkl sources.

Each dataset is a tiny generated copy of its official layout outside the repo (an absolute
``dataset.root``, as a user's /data/... would be) and is run with exactly the commands of
docs/datasets.md, one experiment after another in one temporary git copy of the repo.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from flows.common import prefect_server
from tests.features.test_media import make_mp4
from tests.sources.test_csd import make_official
from tests.sources.test_layouts import _make_meld, _meld_rows
from tests.sources.test_mmsa_pkl import make_pickle
from tests.test_e2e import BIN, _commit_copy, _copy_repo, _run

# The committed baseline: a tiny demo (the `demo` stage is part of every `dvc exp run`,
# it runs once and is then up to date) — the dataset under test comes in through -S only.
BASELINE = {
    "demo.n_clips": 8,
    "demo.clips_per_video": 2,
    "demo.size": 64,
    "demo.fps": 8,
}
# What a user adds for a quick first run; the same for every dataset.
QUICK = [
    "train.models=[late_fusion]",
    "train.seeds=[0]",
    "train.max_epochs=2",
    "train.patience=2",
    "extract.vision.fps=4",
    "extract.workers=1",
    "cache.seq_len.audio=60",
    "cache.seq_len.vision=12",
]


def _set_params(path: Path, values: dict[str, object]) -> str:
    """Write dotted ``values`` into the params file; return the new text."""
    raw = yaml.safe_load(path.read_text())
    for key, value in values.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    text = yaml.safe_dump(raw, sort_keys=False)
    path.write_text(text)
    return text


def _exp_run(repo: Path, env: dict, overrides: list[str]) -> tuple[str, float]:
    """`dvc exp run -S ...` in the workspace; return its output and wall seconds."""
    args = [str(BIN / "dvc"), "exp", "run"]
    for item in [*overrides, *QUICK]:
        args += ["-S", item]
    start = time.perf_counter()
    proc = _run(args, repo, env)
    return proc.stdout + proc.stderr, time.perf_counter() - start


@pytest.mark.slow
def test_dvc_exp_run_meld_csd_and_mmsa_pkl(tmp_path: Path) -> None:
    repo, data = tmp_path / "repo", tmp_path / "datasets"
    repo.mkdir()
    _copy_repo(repo)
    committed = _set_params(repo / "params.yaml", BASELINE)

    # MELD.Raw layout: 4 train / 2 dev / 2 test utterances, 1 s 64×64 mp4s.
    mp4 = make_mp4(tmp_path / "clip.mp4", size=(64, 64), fps=8).read_bytes()
    meld = _make_meld(data / "meld", _meld_rows(), mp4)
    # Official CMU-MOSI .csd files: 3 videos (one per standard fold) × 3 segments.
    mosi_csd = data / "cmu-mosi-csd"
    make_official(mosi_csd)
    # One MMSA processed pickle (6/2/2 clips, MOSI dims).
    pkl = make_pickle(data / "MOSI" / "Processed" / "unaligned_50.pkl")

    env = _commit_copy(repo)

    runs = {
        # the meld preset sets layout meld and task classification: the name is enough
        "meld": ["dataset.name=meld", f"dataset.root={meld}"],
        "mosi": ["dataset.name=mosi", "dataset.source=csd", f"dataset.root={mosi_csd}"],
        "mosi_pkl": [
            "dataset.name=mosi_pkl", "dataset.source=mmsa_pkl", f"dataset.root={pkl}",
            "cache.variants=[unaligned]",
        ],
    }
    seconds = {}
    # One Prefect server for every stage of the three runs (as `msaflow repro` does), so
    # each stage does not start a temporary one of its own.
    with prefect_server() as api_url:
        env["PREFECT_API_URL"] = api_url
        for name, overrides in runs.items():
            # A workspace experiment leaves its -S values in params.yaml; each dataset
            # starts from the committed params, as `git checkout params.yaml` would give.
            (repo / "params.yaml").write_text(committed)
            out, seconds[name] = _exp_run(repo, env, overrides)
            assert "Running stage 'train@late_fusion'" in out, out[-4000:]
            # The next experiment replaces this one's outputs in the workspace: check now.
            _check_outputs(repo, name)
    print("dvc exp run seconds:", {k: round(v, 1) for k, v in seconds.items()})

    # DVC recorded each experiment, with its dataset in the params.
    shown = _run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout
    for name in runs:
        assert f'"{name}"' in shown, name


def _check_outputs(repo: Path, name: str) -> None:
    """The workspace holds dataset ``name``'s cache, checkpoint, metrics and summary."""
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
    else:  # MOSI's [-3, 3] regression scale
        assert {"MAE", "Corr"} <= set(metrics["test"]), (name, metrics)
        assert metrics["test"]["MAE"] >= 0.0
    if name == "mosi":  # official sequences under our names; 3 videos × 3 segments
        csds = {p.name for p in (repo / "data/interim/mosi/csd").iterdir()}
        assert {"words.csd", "covarep.csd", "facet42.csd"} <= csds
        assert len(manifest) == 1 + 9
    if name == "mosi_pkl":  # the pickle's 6 / 2 / 2 clips, nothing extracted
        assert len(manifest) == 1 + 10
        assert not list((repo / "data/interim/mosi_pkl/csd").glob("*.csd"))
