"""Stage ``demo``: a seeded corpus of short opinion clips as real .mp4 files (MMSA layout).

Every clip has a hidden sentiment ``s`` in [-3, 3] (its label). Each modality renders its
own noisy view of ``s`` (``s + N(0, demo.noise.<modality>)``):

- text: an opinion sentence from a small polarity lexicon, its strength the text view
  (``demo.neutral_text`` of the sentences carry no polarity word at all);
- audio: the sentence spoken by eSpeak NG, pitch / intonation range / loudness / rate
  driven by the audio view, one voice per speaker;
- vision: a public-domain face photograph (``skimage.data.astronaut``) whose mouth corners
  are warped up or down by the vision view, with head motion, lighting drift and some
  frames where the face is covered by a solid block.

Because each view is noisy on its own, fusing the three predicts ``s`` better than any
single one: the ablation the whole pipeline is tested on. ``demo_truth.csv`` keeps the
views so that can be checked. Output: ``Raw/<video_id>/<clip_id>.mp4`` (H.264 + AAC),
``label.csv`` and ``demo_truth.csv``, generated in a temporary sibling folder that replaces
``out_dir`` only once it is complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from config.schema import DemoParams
from tasks.contracts import SPLITS
from tasks.demo.face import Pose, hidden_mask, make_frames, sample_pose
from tasks.demo.sentences import make_text
from tasks.demo.speech import AUDIO_RATE, VOICES, make_audio
from tasks.demo.views import sample_sentiment
from tasks.metrics import polarity

LABEL_COLUMNS: tuple[str, ...] = ("video_id", "clip_id", "text", "label", "annotation", "mode")
TRUTH_COLUMNS: tuple[str, ...] = (
    "video_id",
    "clip_id",
    "mode",
    "speaker",
    "voice",
    "sentiment",
    "view_text",
    "view_audio",
    "view_vision",
    "text_polarity",
    "neutral_text",
    "duration",
    "n_frames",
    "hidden_frames",
    "words",
)
_STAGE_SALT = 0xDE30  # mixes the stage name into the base seed (other stages use their own)


class DemoError(ValueError):
    """Demo params that cannot make a corpus; the message names the params key."""




@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip, fixed by the seeded plan."""

    video_id: str
    clip_id: str
    mode: str
    speaker: int
    sentiment: float
    view_text: float
    view_audio: float
    view_vision: float
    text: str
    text_polarity: float
    neutral_text: bool
    pose: Pose
    seed: int


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int) -> None:
    """Encode RGB frames (H.264, yuv420p) and mono float audio (AAC) into one .mp4."""
    import av

    size = frames.shape[1]
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        # One encoder thread: reproducible bytes, and the process pool already uses the cores.
        video.options = {"preset": "veryfast", "crf": "20", "threads": "1"}
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for i, frame in enumerate(frames):
            # Hand x264 tightly packed yuv420p planes: frames converted inside encode() gave
            # different bytes run to run (likely uninitialised row padding being read).
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            picture = av.VideoFrame.from_ndarray(yuv.to_ndarray(), format="yuv420p")
            picture.pts = i
            picture.time_base = Fraction(1, fps)
            container.mux(video.encode(picture))
        container.mux(video.encode())
        hop = 1024  # AAC frame size
        for start in range(0, len(audio), hop):
            chunk = np.ascontiguousarray(audio[start : start + hop][None, :])
            aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            aframe.sample_rate = AUDIO_RATE
            aframe.pts = start
            container.mux(sound.encode(aframe))
        container.mux(sound.encode())


def make_clip(spec: ClipSpec, path: Path, fps: int, size: int, hidden_face: float) -> dict:
    """Render one clip to ``path`` (.mp4); returns its duration and frame counts."""
    rng = np.random.default_rng(spec.seed)
    voice = VOICES[spec.speaker]
    speech, words = make_audio(spec.text, spec.view_audio, voice)
    n_frames = max(1, math.ceil(len(speech) / AUDIO_RATE * fps))
    # Pad audio to exactly the video's length so both streams last as long.
    n_samples = round(n_frames / fps * AUDIO_RATE)
    audio = np.zeros(n_samples, np.float32)
    audio[: min(len(speech), n_samples)] = speech[:n_samples]
    hidden = hidden_mask(n_frames, hidden_face, rng)
    frames = make_frames(spec.view_vision, n_frames, size, fps, spec.pose, hidden, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, audio, fps)
    return {
        "duration": n_frames / fps,
        "n_frames": n_frames,
        "hidden_frames": int(hidden.sum()),
        "words": words,
    }


def _render(job: tuple[ClipSpec, str, int, int, float]) -> dict:
    spec, path, fps, size, hidden_face = job
    try:
        return make_clip(spec, Path(path), fps, size, hidden_face)
    except Exception as err:
        raise RuntimeError(f"demo clip {spec.video_id}/{spec.clip_id}: {err}") from err


def split_counts(n_videos: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Videos per train/valid/test split; every split gets at least one or it is an error."""
    valid = max(1, round(fractions[1] * n_videos))
    test = max(1, round(fractions[2] * n_videos))
    return n_videos - valid - test, valid, test


def _check(params: DemoParams) -> tuple[int, tuple[int, int, int]]:
    if params.size % 2:
        raise DemoError(f"demo.size: H.264 yuv420p needs an even frame size, got {params.size}")
    if params.n_speakers > len(VOICES):
        raise DemoError(f"demo.n_speakers: at most {len(VOICES)} voices, got {params.n_speakers}")
    n_videos = math.ceil(params.n_clips / params.clips_per_video)
    counts = split_counts(n_videos, params.split)
    if n_videos < 3 or min(counts) < 1:
        raise DemoError(
            f"demo.n_clips={params.n_clips} with demo.clips_per_video={params.clips_per_video} "
            f"gives {n_videos} videos, too few for train/valid/test at demo.split="
            f"{list(params.split)}; raise demo.n_clips or lower demo.clips_per_video"
        )
    return n_videos, counts


def plan_corpus(params: DemoParams, seed: int) -> list[ClipSpec]:
    """The seeded plan of every clip: ids, split, speaker, sentiment, views, text, pose."""
    n_videos, counts = _check(params)
    rng = np.random.default_rng([seed, _STAGE_SALT])
    order = rng.permutation(n_videos)
    modes = np.empty(n_videos, dtype=object)
    modes[order[: counts[0]]] = "train"
    modes[order[counts[0] : counts[0] + counts[1]]] = "valid"
    modes[order[counts[0] + counts[1] :]] = "test"
    speakers = rng.permutation(np.arange(n_videos) % params.n_speakers)
    poses = [sample_pose(rng) for _ in range(n_videos)]
    s = sample_sentiment(rng, params.n_clips)
    noise = params.noise
    views = {
        "text": s + rng.normal(0, noise.text, params.n_clips),
        "audio": s + rng.normal(0, noise.audio, params.n_clips),
        "vision": s + rng.normal(0, noise.vision, params.n_clips),
    }
    neutral = rng.random(params.n_clips) < params.neutral_text
    seeds = rng.integers(0, 2**31 - 1, size=params.n_clips)
    specs = []
    for i in range(params.n_clips):
        v = i // params.clips_per_video
        text, polarity = make_text(float(views["text"][i]), bool(neutral[i]), rng)
        specs.append(
            ClipSpec(
                video_id=f"video{v:03d}",
                clip_id=f"{i % params.clips_per_video + 1:02d}",
                mode=str(modes[v]),
                speaker=int(speakers[v]),
                sentiment=float(s[i]),
                view_text=round(float(views["text"][i]), 4),
                view_audio=round(float(views["audio"][i]), 4),
                view_vision=round(float(views["vision"][i]), 4),
                text=text,
                text_polarity=polarity,
                neutral_text=bool(neutral[i]),
                pose=poses[v],
                seed=int(seeds[i]),
            )
        )
    return specs


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield an empty sibling temp folder that replaces ``out_dir`` only if the block succeeds."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        old = None
        if out_dir.exists():
            # Two renames, never a moment where a half-written folder sits at out_dir.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old",
                                        dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _corr(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# Bump when the generated content changes for the same params (invalidates reuse).
GENERATOR_VERSION = 3  # 2: generator.json holds no folder name and no timing; 3: word times
STAMP = "generator.json"


def _stamp(params: DemoParams, seed: int) -> dict[str, Any]:
    return {"version": GENERATOR_VERSION, "seed": seed, "params": params.model_dump(mode="json")}


def reusable(out_dir: Path, params: DemoParams, seed: int) -> dict | None:
    """The stored summary when ``out_dir`` already holds this exact corpus, else None."""
    path = Path(out_dir) / STAMP
    if not (path.is_file() and (Path(out_dir) / "label.csv").is_file()):
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if {k: stored.get(k) for k in ("version", "seed", "params")} != _stamp(params, seed):
        return None
    return stored.get("summary")


def generate(
    params: DemoParams,
    out_dir: Path,
    seed: int,
    progress: bool = True,
    workers: int | None = None,
    force: bool = False,
) -> dict:
    """Generate the demo corpus into ``out_dir`` (atomically) and return a summary.

    A folder that already holds the corpus of these params and seed (its ``generator.json``
    says so) is reused as it is unless ``force``: re-running a finished stage is a no-op.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if not force and (stored := reusable(out_dir, params, seed)) is not None:
        return {**stored, "out_dir": str(out_dir), "reused": True}
    specs = plan_corpus(params, seed)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, workers)
    with staged_dir(out_dir) as tmp:
        jobs = [
            (s, str(tmp / "Raw" / s.video_id / f"{s.clip_id}.mp4"), params.fps, params.size,
             params.hidden_face)
            for s in specs
        ]
        results = _run_jobs(jobs, workers, progress)
        labels, truth = [], []
        for spec, res in zip(specs, results):
            labels.append({
                "video_id": spec.video_id,
                "clip_id": spec.clip_id,
                "text": spec.text,
                "label": f"{spec.sentiment:.4f}",
                "annotation": polarity(spec.sentiment),
                "mode": spec.mode,
            })
            fields = asdict(spec)
            truth.append({
                **{k: fields[k] for k in TRUTH_COLUMNS if k in fields},
                "voice": VOICES[spec.speaker].name,
                "sentiment": f"{spec.sentiment:.4f}",
                "neutral_text": int(spec.neutral_text),
                "duration": f"{res['duration']:.4f}",
                "n_frames": res["n_frames"],
                "hidden_frames": res["hidden_frames"],
                # [[word, start, end], ...]: eSpeak's own timing of each transcript word
                "words": json.dumps(res["words"], separators=(",", ":")),
            })
        _write_csv(tmp / "label.csv", LABEL_COLUMNS, labels)
        _write_csv(tmp / "demo_truth.csv", TRUTH_COLUMNS, truth)
        summary = _summary(specs, results)
        # Only what the params and seed decide goes into the corpus: the same params give
        # the same bytes (and DVC hash) in any folder on any machine. Where it went and how
        # long it took are returned, not kept.
        stamp = {**_stamp(params, seed), "summary": summary}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    seconds = round(time.perf_counter() - started, 2)
    return {"out_dir": str(out_dir), **summary, "generate_seconds": seconds}


def _summary(specs: list, results: list[dict]) -> dict[str, Any]:
    s = [spec.sentiment for spec in specs]
    n_frames = sum(r["n_frames"] for r in results)
    summary: dict[str, Any] = {
        "clips": len(specs),
        "videos": len({spec.video_id for spec in specs}),
        "seconds": round(sum(r["duration"] for r in results), 2),
        **{split: sum(spec.mode == split for spec in specs) for split in SPLITS},
        "hidden_frame_fraction": round(sum(r["hidden_frames"] for r in results) / n_frames, 4),
        "corr_text": round(_corr(s, [spec.text_polarity for spec in specs]), 3),
        "corr_audio": round(_corr(s, [spec.view_audio for spec in specs]), 3),
        "corr_vision": round(_corr(s, [spec.view_vision for spec in specs]), 3),
    }
    return summary


def _run_jobs(jobs: list[tuple], workers: int, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="demo clips", unit="clip", disable=not progress)
    try:
        if workers == 1 or len(jobs) < 4:
            results = []
            for job in jobs:
                results.append(_render(job))
                bar.update()
            return results
        # spawn, not fork: the caller may hold threads (Prefect) and fork copies their locks.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = []
            for res in pool.map(_render, jobs, chunksize=4):
                results.append(res)
                bar.update()
            return results
    finally:
        bar.close()


def run(params: Any, paths: Any) -> dict[str, Any]:
    """The `demo` stage: the corpus params.demo describes, into ``paths.demo_root``."""
    return generate(params.demo, paths.demo_root, seed=params.seed)


def needed(params: Any, paths: Any) -> bool:
    """Whether a run of the whole DAG needs the corpus: the dataset is the demo's folder."""
    return Path(paths.raw_root).resolve() == Path(paths.demo_root).resolve()
