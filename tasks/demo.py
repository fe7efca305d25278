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
import ctypes
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
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from msaflow.params import DemoParams

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
)
SPLITS: tuple[str, ...] = ("train", "valid", "test")
AUDIO_RATE = 16000  # AAC stream rate; the extract stage's default librosa rate, no resampling
SPEECH_PAD = 0.2  # seconds of silence before and after the sentence
VIEW_CLIP = 4.0  # views beyond this are clamped before rendering (keeps faces/voices sane)
_STAGE_SALT = 0xDE30  # mixes the stage name into the base seed (other stages use their own)


class DemoError(ValueError):
    """Demo params that cannot make a corpus; the message names the params key."""


# --------------------------------------------------------------------------------------
# Text: templates + a polarity lexicon, strength = the text view
# --------------------------------------------------------------------------------------

# Adjectives by signed strength level; level 0 words are only mildly evaluative.
LEXICON: dict[int, tuple[str, ...]] = {
    -3: ("terrible", "awful", "horrible", "dreadful", "atrocious", "unbearable"),
    -2: ("bad", "boring", "poor", "disappointing", "annoying", "clumsy"),
    -1: ("dull", "mediocre", "bland", "weak", "forgettable", "tedious"),
    0: ("okay", "average", "ordinary", "acceptable", "passable"),
    1: ("good", "nice", "pleasant", "decent", "solid", "likable"),
    2: ("great", "excellent", "enjoyable", "impressive", "charming", "delightful"),
    3: ("amazing", "brilliant", "outstanding", "wonderful", "fantastic", "superb"),
}
# Modifiers shift a level by about a third, so strength is finer than the seven levels.
INTENSIFIERS: tuple[str, ...] = ("really", "very", "truly", "extremely", "incredibly")
HEDGES: tuple[str, ...] = ("somewhat", "fairly", "rather", "mostly", "slightly")
ASPECTS: tuple[str, ...] = (
    "acting",
    "story",
    "plot",
    "soundtrack",
    "ending",
    "dialogue",
    "cast",
    "script",
    "pacing",
    "camera work",
    "special effects",
    "main character",
    "music",
)
WORKS: tuple[str, ...] = ("movie", "film", "show", "series", "documentary")
# {a} = an aspect, {w} = a work, {p} = the polarity phrase (one or two words).
TEMPLATES: tuple[str, ...] = (
    "I thought the {a} was {p}.",
    "Honestly, the {a} was {p} from start to finish.",
    "The {a} in this {w} felt {p} to me.",
    "Overall, this {w} was {p}.",
    "Overall I would say this {w} is {p}.",
    "My friends and I found the {a} {p}.",
    "I have to say the {a} is {p}.",
    "Watching this {w}, I felt the {a} was {p}.",
    "To be honest, the {w} was {p}.",
    "In my opinion the {a} of this {w} is {p}.",
)
# Sentences with no polarity word at all (the neutral_text fraction).
NEUTRAL_SENTENCES: tuple[str, ...] = (
    "The movie is about two brothers who travel north.",
    "I watched the film on a Sunday afternoon.",
    "The story takes place in a small coastal town.",
    "It runs for about two hours with one intermission.",
    "The director also wrote the script for this one.",
    "Most of the scenes were shot in the desert.",
    "The main character works as a nurse in the city.",
    "I saw it at the cinema with my sister.",
    "The soundtrack uses a lot of piano and strings.",
    "The film came out last spring in a few countries.",
    "There are three main characters and a dog.",
    "It is based on a novel from the nineties.",
)


def polarity_phrase(view: float, rng: np.random.Generator) -> tuple[str, float]:
    """A one- or two-word polarity phrase for ``view`` and the signed strength it renders."""
    v = float(np.clip(view, -VIEW_CLIP, VIEW_CLIP))
    # Round half away from zero (Python's round(-0.5) is 0): the sign follows the view.
    level = int(math.copysign(min(3, math.floor(abs(v) + 0.5)), v))
    adjective = str(rng.choice(LEXICON[level]))
    # The modifier encodes what rounding dropped: intensify towards the pole, or hedge.
    rest = abs(v) - abs(level)
    if level != 0 and rest > 0.17:
        return f"{rng.choice(INTENSIFIERS)} {adjective}", math.copysign(abs(level) + 0.33, level)
    if level != 0 and rest < -0.17:
        return f"{rng.choice(HEDGES)} {adjective}", math.copysign(abs(level) - 0.33, level)
    return adjective, float(level)


def make_text(view: float, neutral: bool, rng: np.random.Generator) -> tuple[str, float]:
    """An opinion sentence (5-12 words) whose polarity is ``view``; neutral ones have none."""
    if neutral:
        return str(rng.choice(NEUTRAL_SENTENCES)), 0.0
    phrase, strength = polarity_phrase(view, rng)
    template = str(rng.choice(TEMPLATES))
    text = template.format(a=rng.choice(ASPECTS), w=rng.choice(WORKS), p=phrase)
    return text, strength


# --------------------------------------------------------------------------------------
# Audio: eSpeak NG through ctypes, prosody = the audio view
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """One speaker: an eSpeak NG voice (language + variant) and its resting prosody."""

    name: str
    pitch: int  # eSpeak base pitch 0-99
    rate: int  # words per minute


VOICES: tuple[Voice, ...] = (
    Voice("en-us", 42, 165),
    Voice("en+f3", 55, 170),
    Voice("en-gb-scotland+m3", 36, 158),
    Voice("en-us+f2", 60, 172),
    Voice("en-029+m1", 46, 162),
    Voice("en+f4", 52, 168),
    Voice("en-gb-x-rp+m7", 40, 170),
    Voice("en-us-nyc+f5", 58, 160),
)

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _ESpeak:
    """The process-wide eSpeak NG engine (the C library keeps global state)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data.decode()}")
        self._chunks: list[np.ndarray] = []
        # Keep a reference: the C side only holds a raw pointer to the callback.
        self._callback = _SYNTH_CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, n: int, _events: Any) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    def speak(
        self, text: str, voice: str, rate: int, pitch: int, range_: int, volume: int
    ) -> np.ndarray:
        """16-bit samples of ``text`` at ``self.sample_rate``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
        for key, value in (
            (_ESPEAK_RATE, rate),
            (_ESPEAK_PITCH, pitch),
            (_ESPEAK_RANGE, range_),
            (_ESPEAK_VOLUME, volume),
        ):
            self.lib.espeak_SetParameter(key, int(value), 0)
        self._chunks = []
        raw = text.encode("utf-8")
        flags = _CHARS_UTF8
        err = self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        self.lib.espeak_Synchronize()
        if err != 0 or not self._chunks:
            raise RuntimeError(f"eSpeak NG could not speak {text!r} (error {err})")
        return np.concatenate(self._chunks)


@lru_cache(maxsize=1)
def _espeak() -> _ESpeak:
    return _ESpeak()


def speak(
    text: str, voice: str, rate: int, pitch: int, range_: int, volume: int
) -> tuple[np.ndarray, int]:
    """eSpeak NG's 16-bit samples of ``text`` (at its native rate), reproducibly.

    The engine keeps state between utterances (a static pitch-flutter phase, the waveform
    generator's cycle), so the same sentence comes out a few samples different each time.
    Each utterance is therefore synthesised in a forked child from a process that has
    never spoken: every clip sounds the same whatever was generated before it.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesise, send the samples, exit without running any cleanup
        status = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as pipe:
                try:
                    engine = _espeak()
                    engine.lib.espeak_ng_SetRandSeed(1)
                    pcm = engine.speak(text, voice, rate, pitch, range_, volume)
                    header = np.array([engine.sample_rate, len(pcm)], np.int64).tobytes()
                    pipe.write(header + pcm.astype(np.int16).tobytes())
                    status = 0
                except Exception as err:  # the parent raises it with the clip's name
                    pipe.write(str(err).encode())
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or len(payload) < 16:
        why = payload.decode(errors="replace") if status else "no samples"
        raise RuntimeError(f"eSpeak NG failed on {text!r} with voice {voice!r}: {why}")
    sample_rate, n = np.frombuffer(payload[:16], np.int64)
    pcm = np.frombuffer(payload[16:], np.int16)
    if len(pcm) != n:
        raise RuntimeError(f"eSpeak NG returned {len(pcm)} of {n} samples for {text!r}")
    return pcm, int(sample_rate)


def prosody(view: float, voice: Voice) -> dict[str, int]:
    """eSpeak rate / pitch / range / volume for an audio view: positive = higher, livelier."""
    v = float(np.clip(view, -VIEW_CLIP, VIEW_CLIP))
    return {
        "rate": int(np.clip(round(voice.rate + 8 * v), 110, 260)),
        "pitch": int(np.clip(round(voice.pitch + 8 * v), 5, 95)),
        "range_": int(np.clip(round(50 + 11 * v), 5, 99)),
        "volume": int(np.clip(round(100 + 22 * v), 30, 190)),
    }


def make_audio(text: str, view: float, voice: Voice) -> np.ndarray:
    """``text`` spoken with prosody from ``view``: float32 mono at AUDIO_RATE, padded."""
    from scipy.signal import resample_poly

    pcm, rate = speak(text, voice.name, **prosody(view, voice))
    g = math.gcd(AUDIO_RATE, rate)
    speech = resample_poly(pcm.astype(np.float32) / 32768.0, AUDIO_RATE // g, rate // g)
    speech = speech.astype(np.float32)
    pad = np.zeros(int(SPEECH_PAD * AUDIO_RATE), np.float32)
    return np.clip(np.concatenate([pad, speech, pad]), -1.0, 1.0)


# --------------------------------------------------------------------------------------
# Vision: the astronaut's face, mouth corners warped by the vision view
# --------------------------------------------------------------------------------------

# Face crop of skimage.data.astronaut() (512x512), checked with MediaPipe Face Mesh: the
# face spans x 178-272, y 72-175 of the photo; mouth corners (landmarks 61/291) sit at
# (201.8, 139.5) and (245.9, 142.2). CROP is (x0, y0, side); PAD extra pixels around it
# let head motion reveal real photo instead of a border.
CROP = (137, 30, 176)
PAD = 24
MOUTH_CORNERS = ((201.8, 139.5), (245.9, 142.2))  # photo coordinates
FACE_BOX = (25.0, 8.0, 151.0, 172.0)  # crop coordinates covered when the face is hidden
WARP_SIGMA = 11.0  # photo pixels: a quarter of the mouth width keeps the lip centre still
WARP_GAIN = 2.6  # photo pixels of corner lift per unit of view (about 8 px at view 3)


@lru_cache(maxsize=8)
def _padded_face(size: int) -> tuple[np.ndarray, float]:
    """The padded face crop scaled so the crop proper is ``size`` pixels, and that scale."""
    import cv2
    from skimage import data

    x0, y0, side = CROP
    photo = data.astronaut()
    region = photo[y0 - PAD : y0 + side + PAD, x0 - PAD : x0 + side + PAD]
    scale = size / side
    out = round(region.shape[0] * scale)
    return cv2.resize(region, (out, out), interpolation=cv2.INTER_AREA), scale


def face_image(view: float, size: int) -> np.ndarray:
    """The padded face (RGB uint8) with its mouth corners lifted (view > 0) or lowered."""
    import cv2

    base, scale = _padded_face(size)
    v = float(np.clip(view, -VIEW_CLIP, VIEW_CLIP))
    h, w = base.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = np.zeros_like(xx)
    dy = np.zeros_like(yy)
    x0, y0, _ = CROP
    lift = WARP_GAIN * v * scale
    sigma = WARP_SIGMA * scale
    for side, (cx, cy) in zip((-1.0, 1.0), MOUTH_CORNERS):
        px, py = (cx - x0 + PAD) * scale, (cy - y0 + PAD) * scale
        weight = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma**2))
        dy -= lift * weight  # image y grows downwards: a positive view moves corners up
        dx += 0.35 * abs(lift) * np.sign(v) * side * weight  # a smile also widens
    # Backward map: each output pixel samples the photo where the displaced content came from.
    return cv2.remap(base, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class Pose:
    """A video's resting head pose and lighting (its clips share them)."""

    dx: float  # fraction of the frame
    dy: float
    angle: float  # degrees
    zoom: float
    gain: float
    tint: tuple[float, float, float]


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random resting pose and lighting for one video."""
    return Pose(
        dx=float(rng.uniform(-0.04, 0.04)),
        dy=float(rng.uniform(-0.04, 0.04)),
        angle=float(rng.uniform(-5, 5)),
        zoom=float(rng.uniform(0.95, 1.05)),
        gain=float(rng.uniform(0.85, 1.1)),
        tint=tuple(float(t) for t in rng.uniform(0.93, 1.07, size=3)),
    )


def hidden_mask(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Which frames have the face covered: one contiguous run, ``fraction`` on average."""
    mask = np.zeros(n_frames, bool)
    n_hidden = int(rng.binomial(n_frames, fraction)) if fraction > 0 else 0
    if n_hidden:
        start = int(rng.integers(0, n_frames - n_hidden + 1))
        mask[start : start + n_hidden] = True
    return mask


def make_frames(
    view: float,
    n_frames: int,
    size: int,
    fps: float,
    pose: Pose,
    hidden: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n_frames, size, size, 3) uint8 RGB: warped face, head motion, lighting, occlusion."""
    import cv2

    face = face_image(view, size)
    scale = size / CROP[2]
    center = (face.shape[1] / 2, face.shape[0] / 2)
    t = np.arange(n_frames) / fps
    # Smooth sway (random phase and speed per clip) plus a little per-frame shake.
    phase = rng.uniform(0, 2 * np.pi, size=4)
    speed = rng.uniform(0.3, 0.9, size=4)
    sway = np.sin(2 * np.pi * speed[:, None] * t[None, :] + phase[:, None])  # (4, T)
    shake = rng.normal(0, 0.15, size=(3, n_frames))
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    x0, y0, x1, y1 = (round(c * scale) for c in FACE_BOX)
    block = tuple(int(c) for c in rng.integers(20, 90, size=3))
    for i in range(n_frames):
        angle = pose.angle + 2.5 * sway[0, i] + shake[0, i]
        m = cv2.getRotationMatrix2D(center, angle, pose.zoom)
        m[0, 2] += -PAD * scale + size * (pose.dx + 0.02 * sway[1, i]) + shake[1, i]
        m[1, 2] += -PAD * scale + size * (pose.dy + 0.02 * sway[2, i]) + shake[2, i]
        frame = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        gain = pose.gain * (1.0 + 0.12 * sway[3, i])
        lit = frame.astype(np.float32) * (gain * np.asarray(pose.tint, np.float32))
        frame = np.clip(lit, 0, 255).astype(np.uint8)
        if hidden[i]:
            # Solid block over the whole face (hair to chin) so no detector finds one.
            frame[max(y0, 0) : y1, max(x0, 0) : x1] = block
        frames[i] = frame
    return frames


# --------------------------------------------------------------------------------------
# One clip: plan, render, encode
# --------------------------------------------------------------------------------------


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
    speech = make_audio(spec.text, spec.view_audio, voice)
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


def sample_sentiment(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hidden sentiments in [-3, 3]: a smooth hump (Beta(2, 2)) over the whole range.

    Its spread (std ~1.34) with view noise 1.0 gives each view a correlation of about 0.8
    with s; a flat distribution would make single modalities too good for the ablation.
    """
    return np.round(3.0 * (2.0 * rng.beta(2.0, 2.0, size=n) - 1.0), 4)


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


def annotation(label: float) -> str:
    """MMSA's polarity class name of a regression label."""
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"


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
GENERATOR_VERSION = 2  # 2: generator.json holds no folder name and no timing
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
                "annotation": annotation(spec.sentiment),
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
