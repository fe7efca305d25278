"""Bad input and faults as a user's messy data and machine bring them: each case ends in a
named cause, nothing half-written is left, a killed run resumes to the same bytes.

Each test builds its own tiny input and goes through the real CLI where the user would meet
the case (exit code, one ``error:`` line naming the file / key / path, no traceback). The
table in docs/reliability.md lists every case and the test that tries it.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from tests.e2e import TinyDemo, clone
from tests.synthetic import make_h5
from tests.tasks.features.test_media import make_mp4

ROOT = Path(__file__).resolve().parents[1]
MSAFLOW = Path(sys.executable).parent / "msaflow"


def _msaflow(args: list[str], cwd: Path, env: dict | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(MSAFLOW), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_error(done: subprocess.CompletedProcess) -> str:
    """The command's ``error:`` message (its first line starts with ``error:``), checked to
    come without a traceback."""
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out[-3000:]
    return done.stderr[done.stderr.index("error:"):]


def _project(tmp_path: Path, **values: object) -> Path:
    """A folder holding params.yaml (the repository's, with ``values`` set)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in values.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp_path


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(("item", "key", "needle"), [
    ("train.lr=inf", "train.lr", "Input should be a finite number"),
    ("seed=-1", "seed", "greater than or equal to 0"),
    ("train.seeds=[0,-2]", "train.seeds.1", "greater than or equal to 0"),
    ("robustness.rates=[0.0,.nan]", "robustness.rates.1", "finite number"),
    ("models.fasca_net.dropout=.inf", "models.fasca_net.dropout", "finite number"),
    ("extract.vision.facemesh.max_side=8", "extract.vision.facemesh.max_side",
     "greater than or equal to 64"),
])
def test_a_params_value_is_checked_where_it_is_declared(tmp_path: Path, item: str, key: str,
                                                        needle: str) -> None:
    done = _msaflow(["check", "-S", item], _project(tmp_path))
    assert done.returncode == 2
    message = _one_error(done)
    assert f"{key}: " in message and needle in message


@pytest.mark.parametrize("item", ["models.fasca_net.hiddn=3", "+models.fasca_net.hiddn=3",
                                  "train.lr=inf"])
def test_msaflow_exp_checks_every_set_before_dvc_starts(tmp_path: Path, item: str) -> None:
    done = _msaflow(["exp", "-S", item], _project(tmp_path))
    assert done.returncode == 2
    message = _one_error(done)
    assert item.lstrip("+").split("=")[0] in message
    assert "Running stage" not in done.stdout + done.stderr  # DVC never started


# --------------------------------------------------------------------------- ingest


def test_own_folder_ids_every_format_rejects_and_empty_labels_are_reported(
    tmp_path: Path,
) -> None:
    """A clip id of '..' (and '.', a control character) is dropped at
    ingest with its line named, so extraction never meets it; an empty label is a line of
    ingest_errors.csv too (kept: its features are made, nothing can train on it)."""
    data = tmp_path / "clips"
    data.mkdir()
    good = make_mp4(data / "good.mp4", seconds=1.0)
    rows = [("..", 0.5), (".", 0.5), ("tab\there", 0.5), ("ok", 1.0), ("nolabel", "")]
    with open(data / "clips.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "path", "text", "label", "split"])
        for clip, label in rows:
            w.writerow([clip, good.name, "a good day", label, "train"])
    proj = _project(tmp_path / "proj", **{"dataset.name": "mine", "dataset.root": str(data)})
    done = _msaflow(["ingest"], proj)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    errors = list(csv.DictReader(open(proj / "data/interim/mine/ingest_errors.csv")))
    by_clip = {e["clip_id"]: e["error"] for e in errors}
    assert "clip id '..' is '.' or '..'" in by_clip[".."]
    assert "clip id '.' is '.' or '..'" in by_clip["."]
    assert "holds a control character" in by_clip["tab\there"]
    assert all(by_clip[c].endswith("clip dropped") for c in ("..", ".", "tab\there"))
    assert f"{data / 'clips.csv'} line 6: no label" in by_clip["nolabel"]
    assert by_clip["nolabel"].endswith("clip kept")
    manifest = list(csv.DictReader(open(proj / "data/interim/mine/manifest.csv")))
    assert [r["clip_id"] for r in manifest] == ["ok", "nolabel"]


# --------------------------------------------------------------------------- media


def test_media_are_checked_for_what_they_claim(tmp_path: Path) -> None:
    """Truncated after a valid header, audio recorded below the extractor's rate, a
    rotation in the display matrix, digitally silent audio: what extract records."""
    from tasks.extract import extract_clip
    from tests.tasks.test_extract import make_cfg, row

    whole = make_mp4(tmp_path / "whole.mp4", seconds=4.0, faststart=True, face=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    low = make_mp4(tmp_path / "low.mp4", seconds=1.0, audio_rate=8000)
    silent = make_mp4(tmp_path / "silent.mp4", seconds=1.0, audio="silent")
    cfg = make_cfg()

    def warnings(result: dict, modality: str) -> list[str]:
        return [e["error"] for e in result["errors"]
                if e["modality"] == modality and e["severity"] == "warning"]

    got = extract_clip(row("v$_$cut", cut), cfg, tmp_path / "cache")
    assert got["status"]["audio"] == got["status"]["vision"] == "computed"
    for modality, kind in (("audio", "audio"), ("vision", "video")):
        (note,) = [w for w in warnings(got, modality) if "truncated" in w]
        assert note.startswith(f"{cut}: {kind} decodes to ") and "file says 4.00 s" in note
    got = extract_clip(row("v$_$low", low), cfg, tmp_path / "cache")
    assert got["status"]["audio"] == "computed"
    assert warnings(got, "audio") == [f"{low}: audio recorded at 8000 Hz, below the 16000 Hz "
                                      "it is read at: upsampled, so it holds nothing above "
                                      "4000 Hz"]
    got = extract_clip(row("v$_$silent", silent), cfg, tmp_path / "cache")
    assert got["missing"] == ["audio"]  # absent, as a file without an audio stream
    assert "silent audio" in got["errors"][0]["error"]


def test_a_rotated_phone_video_is_read_upright(tmp_path: Path) -> None:
    from tasks.features.facemesh import DIM_NAMES, extract_vision
    from tasks.features.media import iter_frames

    up = make_mp4(tmp_path / "up.mp4", seconds=1.0, size=(96, 64), face=True)
    turned = make_mp4(tmp_path / "turned.mp4", seconds=1.0, size=(96, 64), face=True,
                      rotation=90)
    frames = list(iter_frames(turned, 6))
    assert frames[0][1].shape == (64, 96, 3)  # as displayed, not as stored (96 x 64)
    upright = extract_vision(iter(frames), 6)[0]
    reference = extract_vision(iter_frames(up, 6), 6)[0]
    with av.open(str(turned)) as c:  # what reading it without the rotation gives
        raw = [(i / 12, f.to_ndarray(format="rgb24"))
               for i, f in enumerate(c.decode(c.streams.video[0])) if i % 2 == 0]
    sideways = extract_vision(iter(raw), 6)[0]
    roll = list(DIM_NAMES).index("head_roll")
    assert np.abs(upright - reference).mean() < np.abs(sideways - reference).mean() / 3
    assert np.abs(upright[:, roll] - reference[:, roll]).max() < 0.2
    assert np.abs(sideways[:, roll] - reference[:, roll]).min() > 0.5


# --------------------------------------------------------------------------- outputs


def test_a_stage_s_folder_of_outputs_appears_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while extract writes its .csd files: the csd folder keeps the
    previous run's files, no partial one appears, and the error names the folder."""
    import tasks.extract as extract_mod
    from tasks.io import OutputError
    from tests.tasks.test_extract import _stage

    media = {"face": make_mp4(tmp_path / "face.mp4", seconds=1.0, face=True)}
    params, paths = _stage(tmp_path, media, ["face"])
    extract_mod.run(params, paths)
    before = {p.name: p.read_bytes() for p in paths.csd_dir.iterdir()}
    assert len(before) == 5
    real = extract_mod.write_csd
    written: list[str] = []

    def fill_up(path, *args, **kwargs):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(extract_mod, "write_csd", fill_up)
    with pytest.raises(OutputError, match=rf"^{paths.csd_dir}: cannot be written: No space"):
        extract_mod.run(params, paths)
    after = {p.name: p.read_bytes() for p in paths.csd_dir.iterdir()}
    assert after == before
    assert [p.name for p in paths.csd_dir.parent.iterdir() if p.name.startswith(".csd")] == []


@pytest.mark.parametrize(("code", "cause"), [(errno.ENOSPC, "No space left on device"),
                                             (errno.EROFS, "Read-only file system")])
def test_export_to_a_full_or_read_only_disk_is_one_line_before_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    code: int, cause: str,
) -> None:
    import tasks.export as export_mod
    import tasks.io as io_mod
    from msaflow.cli import main

    proj = _project(tmp_path)
    make_h5(proj / "data/processed/demo/unaligned.h5")
    monkeypatch.chdir(proj)
    read = []
    monkeypatch.setattr(export_mod, "_split", lambda *a: read.append(1))  # the work
    out = tmp_path / "full" / "mosi.pkl"

    def refuse(*args, **kwargs):
        raise OSError(code, cause)

    monkeypatch.setattr(io_mod.tempfile, "mkstemp", refuse)
    assert main(["export", "mmsa", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {out}: cannot be written: {cause}"
    assert read == []  # nothing was read: the check came first


# --------------------------------------------------------------------------- predict


@pytest.mark.slow  # two predict commands on the tiny demo's checkpoints
def test_predict_with_messy_videos_and_files(tiny_demo: TinyDemo, tmp_path: Path) -> None:
    """A transcripts CSV with a byte that is not UTF-8, a video whose audio is silent and
    one cut in half after its header: every video is scored, each note says what was
    wrong. A checkpoint file cut short is one error line naming it."""
    repo, env = clone(tiny_demo, tmp_path / "repo")
    clips = sorted((repo / "data/raw/demo/Raw").rglob("*.mp4"))
    videos = tmp_path / "videos"
    videos.mkdir()
    good = shutil.copy(clips[0], videos / "good.mp4")
    silent = make_mp4(videos / "silent.mp4", seconds=2.0, audio="silent", face=True)
    whole = make_mp4(tmp_path / "whole.mp4", seconds=4.0, faststart=True, face=True)
    cut = videos / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    transcripts = tmp_path / "tr.csv"
    transcripts.write_bytes(b"path,text\n" + f"{good}".encode() + b",a caf\xe9 day\n"
                            + f"{silent}".encode() + b",silence\n")
    out = tmp_path / "p.json"
    done = _msaflow(["predict", str(good), str(silent), str(cut), "--model", "late_fusion",
                     "--transcripts", str(transcripts), "--out", str(out)], repo, env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    doc = json.loads(out.read_text())
    assert doc["failed"] == 0 and doc["videos"] == 3
    by_name = {Path(e["path"]).name: e for e in doc["predictions"]}
    assert by_name["good.mp4"]["transcript"] == "a caf\ufffd day"
    assert any(f"{transcripts} line 2: not valid utf-8 (byte 0xe9" in n
               for n in by_name["good.mp4"]["notes"])
    assert "audio" in by_name["silent.mp4"]["absent"]
    assert any("truncated" in n for n in by_name["cut.mp4"]["notes"])

    ckpt = repo / "data/checkpoints/demo/late_fusion/seed0.ckpt"
    bad = tmp_path / "seed0.ckpt"
    bad.write_bytes(ckpt.read_bytes()[:500])
    done = _msaflow(["predict", str(good), "--model", "late_fusion", "--checkpoint", str(bad),
                     "--text", "fine", "--out", str(tmp_path / "q.json")], repo, env)
    assert done.returncode == 1
    message = _one_error(done)
    assert f"{bad}: not a readable checkpoint" in message and "msaflow train" in message
    assert not (tmp_path / "q.json").exists()


# --------------------------------------------------------------------------- training


def _train_project(where: Path) -> Path:
    proj = _project(where, **{"train.models": ["late_fusion"], "train.seeds": [0],
                              "train.max_epochs": 6, "train.patience": 6,
                              "train.accelerator": "cpu"})
    make_h5(proj / "data/processed/demo/unaligned.h5", n=(480, 48, 48))
    return proj


def _curves(proj: Path) -> dict[str, list[list[str]]]:
    """Every DVCLive curve of the seed, without its timestamps."""
    base = proj / "reports/demo/late_fusion/train/seed0/plots"
    out = {}
    for tsv in sorted(base.rglob("*.tsv")):
        rows = list(csv.reader(open(tsv), delimiter="\t"))
        keep = [i for i, name in enumerate(rows[0]) if name != "timestamp"]
        out[str(tsv.relative_to(base))] = [[r[i] for i in keep] for r in rows]
    return out


@pytest.mark.slow  # three training commands
def test_a_killed_training_resumes_to_the_bytes_of_an_uninterrupted_run(tmp_path: Path) -> None:
    """SIGKILL once epoch 2's resume checkpoint is on disk; the same command again gives the
    checkpoint bytes and the curves of a run that was never stopped. While killed, nothing
    partial is in the outputs' places."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    clean = _train_project(tmp_path / "clean")
    done = _msaflow(["train", "late_fusion"], clean, env)
    assert done.returncode == 0, done.stderr[-3000:]

    proj = _train_project(tmp_path / "killed")
    last = proj / "data/interim/demo/train_work/late_fusion/seed0/last.ckpt"
    proc = subprocess.Popen([str(MSAFLOW), "train", "late_fusion"], cwd=proj,
                            env=dict(env, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
            except Exception:  # being written: look again
                epoch = -1
            if epoch >= 1:  # epochs 1 and 2 done, on disk
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = epoch
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None, "training ended before it could be killed"
    final = proj / "data/checkpoints/demo/late_fusion/seed0.ckpt"
    assert not final.exists()
    assert not (proj / "reports/demo/late_fusion/train/seed0").exists()
    assert not list((proj / "data/checkpoints").rglob("work"))

    done = _msaflow(["train", "late_fusion"], proj, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout + done.stderr
    assert final.read_bytes() == (clean / "data/checkpoints/demo/late_fusion/seed0.ckpt"
                                  ).read_bytes()
    assert _curves(proj) == _curves(clean)
    assert not last.parent.exists()  # the resume state goes once the seed is done
