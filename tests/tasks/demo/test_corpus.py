"""tasks.demo: the seeded demo corpus of real mp4 clips (H.264 + AAC) in the MMSA layout."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from config.schema import DemoParams
from tasks.demo import corpus as demo
from tasks.demo.corpus import LABEL_COLUMNS, TRUTH_COLUMNS, DemoError, generate
from tasks.demo.face import Pose, make_frames
from tasks.demo.sentences import LEXICON, make_text
from tasks.demo.speech import AUDIO_RATE, VOICES, make_audio

# MediaPipe Face Mesh landmarks: mouth corners, lip centre (upper/lower), forehead, chin.
CORNERS, LIPS, FACE = (61, 291), (13, 14), (10, 152)


def tiny_params(**update: object) -> DemoParams:
    """8 clips in 4 videos of 64x64 frames: a full corpus in about a second."""
    raw = {
        "n_clips": 8,
        "n_speakers": 3,
        "split": (0.5, 0.25, 0.25),
        "clips_per_video": 2,
        "fps": 8,
        "size": 64,
        "noise": {"text": 1.0, "audio": 1.0, "vision": 1.0},
        "neutral_text": 0.15,
        "hidden_face": 0.1,
    }
    raw.update(update)
    return DemoParams.model_validate(raw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "raw" / "demo"
    summary = generate(tiny_params(), out, seed=7, progress=False, workers=1)
    return out, summary


def _labels(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "label.csv", dtype={"video_id": str, "clip_id": str})


def _truth(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "demo_truth.csv", dtype={"video_id": str, "clip_id": str})


def _decoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All video frames (gray) and audio samples of an mp4."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        ).astype(np.float32)
    return frames, audio


def _media(root: Path, row: pd.Series) -> Path:
    return root / "Raw" / row.video_id / f"{row.clip_id}.mp4"


def test_layout_labels_and_splits(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    labels = _labels(root)
    assert tuple(labels.columns) == LABEL_COLUMNS
    assert len(labels) == 8 and not labels.duplicated(["video_id", "clip_id"]).any()
    for _, row in labels.iterrows():
        assert _media(root, row).stat().st_size > 1000
    # Splits are by video: every split present, no video in two of them.
    assert set(labels["mode"]) == {"train", "valid", "test"}
    assert (labels.groupby("video_id")["mode"].nunique() == 1).all()
    assert {k: summary[k] for k in ("train", "valid", "test")} == {
        "train": 4, "valid": 2, "test": 2
    }
    assert labels["label"].between(-3, 3).all()
    expected = np.where(labels["label"] > 0, "Positive", "Negative")
    assert (labels["annotation"] == expected).all()
    assert labels["text"].str.split().str.len().between(5, 12).all()
    truth = _truth(root)
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert (truth["sentiment"].to_numpy() == labels["label"].to_numpy()).all()
    assert summary["clips"] == 8 and summary["seconds"] == pytest.approx(
        truth["duration"].sum(), abs=0.01
    )
    # Nothing but the corpus is left beside it (no staging folders).
    assert [p.name for p in root.parent.iterdir()] == ["demo"]


def test_mp4_streams_durations_and_audio(corpus: tuple[Path, dict]) -> None:
    root, _ = corpus
    truth = _truth(root)
    for _, row in truth.iterrows():
        with av.open(str(_media(root, row))) as container:
            assert [s.type for s in container.streams] == ["video", "audio"]
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
            assert (video.width, video.height) == (64, 64)
            assert video.codec_context.pix_fmt == "yuv420p"
            assert audio.codec_context.sample_rate == AUDIO_RATE
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        with av.open(str(_media(root, row))) as container:
            sound = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
        assert len(frames) == row.n_frames
        assert row.duration == pytest.approx(row.n_frames / 8, abs=1e-3)
        assert 1.2 <= row.duration <= 6.0
        # AAC adds a priming frame (1024 samples) at most; otherwise the streams agree.
        assert abs(len(sound) / AUDIO_RATE - row.duration) < 0.1
        rms = float(np.sqrt(np.mean(sound.astype(np.float64) ** 2)))
        assert rms > 0.01, f"{row.video_id}/{row.clip_id} is silent"


def test_same_seed_same_corpus(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = corpus
    again = tmp_path / "again"
    generate(tiny_params(), again, seed=7, progress=False, workers=1)
    # generator.json too: no folder name, no timing (the same bytes, the same DVC hash).
    for name in ("label.csv", "demo_truth.csv", "generator.json"):
        assert (again / name).read_bytes() == (root / name).read_bytes()
    # eSpeak runs from a fresh state per clip: the decoded media repeat (the encoders'
    # container bytes may differ in padding, the content may not).
    row = _labels(root).iloc[0]
    a_frames, a_audio = _decoded(_media(again, row))
    b_frames, b_audio = _decoded(_media(root, row))
    assert a_frames.shape == b_frames.shape and a_audio.shape == b_audio.shape
    assert np.abs(a_frames.astype(int) - b_frames.astype(int)).mean() < 1.0
    assert np.abs(a_audio - b_audio).max() < 0.05
    other = tmp_path / "other"
    generate(tiny_params(), other, seed=8, progress=False, workers=1)
    assert (other / "label.csv").read_bytes() != (root / "label.csv").read_bytes()


def test_text_polarity_follows_view() -> None:
    rng = np.random.default_rng(0)
    positive = set().union(*(LEXICON[k] for k in (1, 2, 3)))
    negative = set().union(*(LEXICON[k] for k in (-1, -2, -3)))
    polar = positive | negative | set(LEXICON[0])
    for view in np.linspace(-4, 4, 33):
        for _ in range(5):
            text, strength = make_text(float(view), False, rng)
            words = {w.strip(".,").lower() for w in text.split()}
            assert 5 <= len(text.split()) <= 12, text
            if view >= 0.5:
                assert words & positive and not words & negative and strength > 0, text
            elif view <= -0.5:
                assert words & negative and not words & positive and strength < 0, text
        neutral, strength = make_text(float(view), True, rng)
        assert strength == 0 and not {w.strip(".,").lower() for w in neutral.split()} & polar


def test_audio_view_drives_loudness_and_rate() -> None:
    text = "I thought the acting was really great."
    low, high = (make_audio(text, v, VOICES[0])[0] for v in (-3.0, 3.0))
    rms = [float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) for x in (low, high)]
    assert rms[1] > 1.5 * rms[0]
    assert len(high) < len(low)  # a positive view speaks faster
    again, words = make_audio(text, 3.0, VOICES[0])
    assert np.array_equal(again, high)  # reproducible
    # eSpeak's own word times, in order, inside the padded audio
    assert [w for w, _, _ in words] == text.rstrip(".").replace(",", "").split()
    times = np.array([(s, e) for _, s, e in words])
    assert np.all(np.diff(times[:, 0]) > 0) and np.all(times[:, 1] > times[:, 0])
    assert times[0, 0] >= 0.19 and times[-1, 1] <= len(high) / AUDIO_RATE


def _mouth_lift(mesh, frame: np.ndarray) -> float | None:
    """Lip-centre height minus mouth-corner height, over face height (> 0 = smiling)."""
    found = mesh.process(frame).multi_face_landmarks
    if not found:
        return None
    pts = np.array([[p.x, p.y] for p in found[0].landmark])
    face = np.linalg.norm(pts[FACE[0]] - pts[FACE[1]])
    return float((pts[list(LIPS), 1].mean() - pts[list(CORNERS), 1].mean()) / face)


def test_mouth_warp_moves_facemesh_corners_monotonically() -> None:
    mp = pytest.importorskip("mediapipe")
    pose = Pose(dx=0.0, dy=0.0, angle=0.0, zoom=1.0, gain=1.0, tint=(1.0, 1.0, 1.0))
    shown, hidden = np.zeros(1, bool), np.ones(1, bool)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=False) as mesh:
        lifts = []
        for view in (-3.0, 0.0, 3.0):
            # Same rng seed: the same head jitter, only the mouth differs.
            frame = make_frames(view, 1, 128, 12, pose, shown, np.random.default_rng(0))[0]
            lifts.append(_mouth_lift(mesh, frame))
        assert None not in lifts, f"Face Mesh missed the face: {lifts}"
        assert lifts[0] < lifts[1] < lifts[2], lifts
        assert lifts[2] - lifts[0] > 0.02, lifts  # clearly visible, not pixel noise
        covered = make_frames(0.0, 1, 128, 12, pose, hidden, np.random.default_rng(0))[0]
        assert _mouth_lift(mesh, covered) is None


def test_too_few_clips_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match=r"demo\.n_clips"):
        generate(tiny_params(n_clips=6, clips_per_video=4), tmp_path / "x", seed=0)
    with pytest.raises(DemoError, match=r"demo\.size"):
        generate(tiny_params(size=65), tmp_path / "x", seed=0)
    assert not any(tmp_path.iterdir())


def test_failure_leaves_previous_corpus_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "label.csv").write_text("previous corpus\n")
    real_write = demo.write_mp4
    calls = []

    def fail_on_third(path: Path, *args: object) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_write(path, *args)

    monkeypatch.setattr(demo, "write_mp4", fail_on_third)
    with pytest.raises(RuntimeError, match=r"demo clip video001/01: disk full"):
        generate(tiny_params(), out, seed=0, progress=False, workers=1)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    assert [p.name for p in out.iterdir()] == ["label.csv"]
    assert (out / "label.csv").read_text() == "previous corpus\n"
    # Without a previous corpus, a failure leaves nothing that could pass for one.
    fresh = tmp_path / "fresh"
    calls.clear()
    with pytest.raises(RuntimeError):
        generate(tiny_params(), fresh, seed=0, progress=False, workers=1)
    assert not fresh.exists() and [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_finished_corpus_is_reused(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    label = root / "label.csv"
    mtime = label.stat().st_mtime_ns
    again = generate(tiny_params(), root, seed=7, progress=False, workers=1)
    assert again["reused"] is True and again["clips"] == summary["clips"]
    assert label.stat().st_mtime_ns == mtime
    assert demo.reusable(root, tiny_params(), seed=8) is None  # another seed: regenerate
