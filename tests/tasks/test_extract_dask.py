"""Stage `extract` on Dask (prefect-dask): a real local cluster of 2 worker processes gives
the thread runner's bytes; a scheduler address nobody answers at is a clear error."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.tasks.features.test_media import make_mp4

ROOT = Path(__file__).resolve().parents[2]
MSAFLOW = str(Path(sys.executable).parent / "msaflow")


def _project(tmp: Path) -> Path:
    """A scratch project: params.yaml (dataset t) and a manifest of three clips."""
    proj = tmp / "proj"
    clips = proj / "clips"
    clips.mkdir(parents=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dataset"].update(name="t", root="clips")
    raw["extract"]["text"]["timing"] = "spread"  # tones, not speech
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    rows = []
    for i, face in enumerate((True, "half", False)):
        media = make_mp4(clips / f"c{i}.mp4", size=(96, 96), face=face)
        rows.append({"clip_id": f"v$_${i}", "media": str(media.relative_to(proj)),
                     "start": "", "end": "", "text": "I really love this movie",
                     "split": "train", "label": 0.5})
    manifest = proj / "data/interim/t/manifest.csv"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return proj


def _extract(proj: Path, *sets: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PREFECT_API_URL", None)
    args = [MSAFLOW, "extract"] + [x for s in sets for x in ("-S", s)]
    return subprocess.run(args, cwd=proj, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_local_dask_cluster_writes_the_thread_runners_bytes(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    csd = proj / "data/interim/t/csd"
    threads = _extract(proj, "extract.runner=threads")
    assert threads.returncode == 0, threads.stdout[-3000:] + threads.stderr[-3000:]
    expected = {p.name: p.read_bytes() for p in sorted(csd.glob("*.csd"))}
    assert len(expected) == 5
    shutil.rmtree(csd)
    shutil.rmtree(proj / "data/interim/t/extract_cache")  # computed again, on the workers
    dask = _extract(proj, "extract.runner=dask", "extract.workers=2")
    out = dask.stdout + dask.stderr
    assert dask.returncode == 0, out[-3000:]
    assert "'computed_vision': 3" in out and "Traceback" not in out
    got = {p.name: p.read_bytes() for p in sorted(csd.glob("*.csd"))}
    assert got.keys() == expected.keys()
    for name, data in expected.items():
        assert got[name] == data, f"{name} differs between the thread and Dask runners"


def test_an_unreachable_scheduler_names_the_key(tmp_path: Path) -> None:
    from config.errors import ParamsError
    from flows.extract import check_scheduler

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ParamsError, match=r"extract\.dask\.address: no Dask scheduler answers"):
        check_scheduler(f"tcp://127.0.0.1:{port}", timeout=2)


def test_a_lost_clip_is_reported_as_failed_in_every_modality() -> None:
    from tasks.extract import MODALITIES, lost_clip

    result = lost_clip({"clip_id": "v$_$9", "media": "x.mp4"}, "not extracted: KilledWorker")
    assert result["clip_id"] == "v$_$9" and set(result["status"].values()) == {"failed"}
    assert [e["modality"] for e in result["errors"]] == list(MODALITIES)
    assert all(e["severity"] == "error" and "KilledWorker" in e["error"]
               for e in result["errors"])
