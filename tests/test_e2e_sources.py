"""End to end, as a user who follows the docs: the README's commands, then a dataset's.

In a copy of the tiny demo repository (tests/e2e.py: ``msaflow repro``, what ``make demo``
runs after installing, on a tiny params set), every command of the README's code blocks, in
the README's order, exactly as written but for the data folders (a user's /data/... is a
folder outside the repo here: the README's own-videos folder made of demo clips, and a tiny
copy of MELD's official layout for docs/datasets.md's MELD command). The MMSA-folder command
of docs/datasets.md runs, with its own -S items, in tests/config/test_overrides.py. A README
command that this test neither runs nor names as run elsewhere fails it, so the README cannot
show a command nobody ran. The demo's artifacts never leave the workspace for good:
experiments run in temporary copies, and the documented way back restores every byte.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tasks.demo import DEMO_WARNING
from tasks.sources.mmsa_pkl.reader import load_pickle
from tests.e2e import BIN, ROOT, TinyDemo, clone, commands
from tests.e2e import run as _run
from tests.tasks.features.test_media import make_mp4
from tests.tasks.sources.test_layouts import _make_meld, _meld_rows

# README commands run by other tests (or by CI itself), and where.
ELSEWHERE = {
    "make test": "CI: .ci/run",
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


def _shell(command: str, repo: Path, env: dict, ok: bool = True) -> str:
    """Run one documented command line as a new shell would; its output (it must succeed,
    or with ``ok`` False, fail)."""
    proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=900)
    assert (proc.returncode == 0) == ok, \
        f"{command}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _experiment(repo: Path, env: dict, dataset: str) -> str:
    """The commit of the newest experiment run on ``dataset``."""
    shown = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout)
    found = []
    for base in shown:
        for exp in base.get("experiments") or []:
            for rev in exp["revs"]:
                ds = rev["data"]["params"]["params.yaml"]["data"]["dataset"]
                if ds["name"] == dataset:
                    found.append((rev["data"]["timestamp"], rev["rev"]))
    assert found, dataset
    return max(found)[1]


@pytest.mark.slow
def test_the_readme_and_the_dataset_commands_as_written(tiny_demo: TinyDemo,
                                                       tmp_path: Path) -> None:
    repo, env = clone(tiny_demo, tmp_path / "repo")
    env.pop("VIRTUAL_ENV", None)  # a new shell: `source .venv/bin/activate` sets these
    readme = commands(ROOT / "README.md")
    # MELD.Raw layout: 4 train / 2 dev / 2 test utterances, 1 s 64×64 mp4s.
    mp4 = make_mp4(tmp_path / "clip.mp4", size=(64, 64), fps=8).read_bytes()
    meld = _make_meld(tmp_path / "datasets" / "meld", _meld_rows(), mp4)
    videos = _own_videos(repo / "data/raw/demo", tmp_path / "datasets" / "my_videos")
    where = {"/data/MELD.Raw": str(meld), "/data/my_videos": str(videos)}
    seconds: dict[str, float] = {}

    def run(command: str, ok: bool = True) -> str:
        for path, here in where.items():
            command = command.replace(path, here)
        start = time.perf_counter()
        out = _shell(command, repo, env, ok)
        seconds[command[:40]] = round(time.perf_counter() - start, 1)
        return out

    # `make demo`: the install (CI's and this test's environment) and `msaflow repro`, which
    # the tiny demo ran. The committed lock is another params set's: the end of the run says
    # so (and `msaflow exp apply` below commits these results before it brings one in).
    assert "dvc.lock now differs from the last commit" in tiny_demo.output, (
        tiny_demo.output[-3000:])
    # `source .venv/bin/activate`: the venv's bin on PATH is what it does here.
    done: set[str] = {"make demo", "source .venv/bin/activate"}
    clips = sorted((repo / "data/raw/demo/Raw").rglob("*.mp4"))
    shutil.copy(clips[0], repo / "me.mp4")
    shutil.copy(clips[-1], repo / "new.mp4")
    (repo / "clips").mkdir()
    with open(repo / "transcripts.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "text"])
        for clip in clips[1:3]:
            shutil.copy(clip, repo / "clips" / clip.name)
            writer.writerow([f"clips/{clip.name}", "it was a good day"])
    demo = _snapshot(repo)
    params_text = (repo / "params.yaml").read_text()
    assert "data/checkpoints/demo/fasca_net/seed0.ckpt" in demo

    for command in readme:
        if _bare(command) in done | set(ELSEWHERE):  # `make demo` ran as the tiny demo
            continue
        if command == "msaflow exp apply myvids":
            # before it: predict and export on that dataset name the experiment, and how
            fails = run("msaflow predict new.mp4 --model fasca_net -S dataset.name=my_videos",
                        ok=False)
            assert "experiment 'myvids' made it" in fails, fails
            assert "`msaflow exp apply myvids`" in fails, fails
            fails = run("msaflow export mmsa -S dataset.name=my_videos", ok=False)
            assert "experiment 'myvids' made it" in fails, fails
        before = _snapshot(repo)
        out = run(command)
        done.add(command)
        _check(command, out, repo, before, demo, params_text)
        if command == "msaflow exp apply myvids":
            changed = _changed_lines(params_text, (repo / "params.yaml").read_text())
            assert [(a.split(":")[0], b.split("#")[0].split(":", 1)[1].strip(),
                     a.split("#")[1] == b.split("#")[1]) for a, b in changed] == [
                ("  name", "my_videos", True), ("  root", str(videos), True)], changed
            assert (repo / "reports/report_my_videos.html").is_file()
        if command.startswith("git checkout -- params.yaml"):  # the way back
            assert {k: v for k, v in _snapshot(repo).items() if k in demo} == demo
            assert (repo / "params.yaml").read_text() == params_text
            assert json.loads(_run([str(BIN / "dvc"), "status", "--json"], repo,
                                   env).stdout) == {}
        if command.startswith("msaflow predict new.mp4"):  # the own videos' model, and export
            run("msaflow export mmsa")
            (pkl,) = (repo / "data/exports/my_videos/mmsa").glob("unaligned_*.pkl")
            assert len(load_pickle(pkl)["test"]["id"]) == 2
    assert {"msaflow exp apply myvids"} <= done

    # docs/datasets.md's MELD command: MELD's release layout through the whole DAG, as an
    # experiment; its results are read from the experiment's commit.
    (meld_command,) = [c for c in commands(ROOT / "docs/datasets.md")
                       if "dataset.name=meld" in c and "target" not in c]
    run(meld_command)
    metrics = json.loads(subprocess.run(
        ["git", "show", f"{_experiment(repo, env, 'meld')}:reports/meld/late_fusion/"
         "metrics.json"], cwd=repo, check=True, capture_output=True, text=True).stdout)
    assert {"Acc", "F1_weighted"} <= set(metrics["test"]), metrics  # 7 emotions
    assert 0.0 <= metrics["test"]["Acc"] <= 1.0
    print("seconds:", seconds)

    missing = {_bare(c) for c in readme} - {_bare(c) for c in done} - set(ELSEWHERE)
    assert not missing, f"README commands no test runs: {sorted(missing)}"


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """The lines of ``after`` that differ from ``before``'s, paired (same line count)."""
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), (before, after)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def _own_videos(demo: Path, folder: Path) -> Path:
    """The README's own-videos folder, made of the tiny demo's clips: ``clips.csv`` (clip_id,
    path relative to it, text, label, split: 4 train / 2 valid / 2 test) and the media, some
    in a subfolder."""
    with open(demo / "label.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    folder.mkdir(parents=True)
    with open(folder / "clips.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "path", "text", "label", "split"])
        for i, row in enumerate(rows[:8]):
            rel = f"talks/c{i:02d}.mp4" if i % 2 else f"c{i:02d}.mp4"
            (folder / rel).parent.mkdir(exist_ok=True)
            shutil.copy(demo / "Raw" / row["video_id"] / f"{row['clip_id']}.mp4", folder / rel)
            split = "train" if i < 4 else "valid" if i < 6 else "test"
            writer.writerow([f"c{i:02d}", rel, row["text"], row["label"], split])
    return folder


def _check(command: str, out: str, repo: Path, before: dict, demo: dict,
           params_text: str) -> None:
    """What a README command must have done."""
    if command.startswith("msaflow exp -n"):
        assert "Running stage 'train@late_fusion'" in out, out[-4000:]
        assert "Running stage 'demo'" not in out  # the demo is not recomputed
        assert _snapshot(repo) == before, command  # a temporary copy ran it
    if command.startswith("msaflow exp -n wide"):  # nothing before training re-ran
        assert "Running stage 'extract'" not in out, out[-4000:]
    if command.startswith("msaflow exp -n myvids"):  # a new dataset: its stages all run
        assert "No file hash info" not in out and "have no earlier result here" in out, out
        assert "warning: valid has 2 clip(s)" in out, out[-4000:]
    if command == "msaflow exp show":
        rows = {r.split("|")[1].strip(" └"): r for r in out.splitlines() if r.startswith("|")}
        assert "models.late_fusion.hidden=128" in rows["wide"], out
        if "myvids" in rows:  # an experiment of the commit `exp apply` made, both listed
            assert "dataset.name=my_videos" in rows["myvids"], out
    if command == "msaflow exp apply wide":
        assert "committed them first" in out, out  # the tiny demo's results, kept
        # the one value the experiment changed, in place: every other line as it was
        ((was, now),) = _changed_lines(params_text, (repo / "params.yaml").read_text())
        assert was.replace("hidden: 64", "hidden: 128") == now, (was, now)
        assert now.lstrip().startswith("late_fusion: {"), now
        ckpt = "data/checkpoints/demo/late_fusion/seed0.ckpt"
        assert _snapshot(repo)[ckpt] != demo[ckpt]  # the experiment's model
    if command == "dvc metrics show":
        assert "reports/headline_demo/late_fusion.json" in out, out
    if command == "dvc plots show":
        page = (repo / "dvc_plots/index.html").read_text()
        assert "vegaEmbed" in page and "cdn.jsdelivr" not in page
        assert not re.search(r"<script[^>]+src=", page)  # Vega inline: renders offline
    if command.startswith("msaflow predict me.mp4"):
        me = json.loads((repo / "me.json").read_text())
        assert me["model"] == "fasca_net" and me["videos"] == 1, me
        assert me["predictions"][0]["transcript"] == "I really loved this film", me
        assert me["predictions"][0]["notes"][0] == DEMO_WARNING, me
        assert f"warning: fasca_net was {DEMO_WARNING}" in out, out
        assert "typed" in out, out
    if command.startswith("msaflow predict clips/"):
        assert (repo / "predictions/demo/late_fusion.json").is_file()
    if command.startswith("msaflow predict new.mp4"):
        doc = json.loads((repo / "predictions/my_videos/fasca_net.json").read_text())
        (entry,) = doc["predictions"]
        assert doc["dataset"] == "my_videos" and "warning" not in doc, doc
        assert DEMO_WARNING not in entry.get("notes", []), entry
        assert entry["transcript_source"] == "asr:pocketsphinx" and "asr:pocketsphinx" in out
    if command.startswith("msaflow export mmsa"):
        (pkl,) = (repo / "data/exports/demo/mmsa").glob("unaligned_*.pkl")
        exported = load_pickle(pkl)
        assert len(exported["train"]["id"]) and exported["msaflow"]["variant"] == "unaligned"
