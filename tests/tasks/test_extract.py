"""tasks.extract*: the three extractors, the per-clip cache and the .csd outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.paths import Paths
from config.schema import ExtractParams
from models.text_encoders import frozen_encoder, load_tokenizer
from tasks import extract
from tasks.contracts import EXTRACT_ERROR_COLUMNS, ExtractError, ExtractionFailed, SilentAudio
from tasks.features.facemesh import DIM as VISION_DIM
from tasks.features.facemesh import NO_FACE_WARNING, extract_vision
from tasks.features.librosa import DIM_NAMES as AUDIO_DIMS
from tasks.features.librosa import extract_audio
from tasks.features.media import decode_audio, iter_frames
from tasks.features.text import extract_text
from tasks.formats.csd import decode_words, read_csd
from tasks.params import load_params
from tasks.speech.words import spread_by_length
from tests.tasks.features.test_media import make_mp4

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "I really love this movie, it's great!"


def make_cfg(**changes: object) -> ExtractParams:
    """Extract params as in params.yaml, with dotted-key-free top-level overrides."""
    raw = {
        "workers": 1,
        "fail_fast": False,
        "max_failed_fraction": 0.5,
        "audio": {"feature_set": "librosa", "sample_rate": 16000, "hop_seconds": 0.04},
        "vision": {"feature_set": "facemesh", "fps": 6, "facemesh": {"max_side": 640}},
        # The clips' audio is a tone, not speech: words are spread (forced alignment has its
        # own tests in tests/tasks/speech/test_speech.py).
        "text": {"tokenizer": "minilm", "encoder": "minilm", "max_tokens": 48,
                 "timing": "spread"},
    }
    raw.update(changes)
    return ExtractParams.model_validate(raw)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(2).bytes(2048))
    return {
        "face": make_mp4(d / "face.mp4", size=(96, 96), face=True),
        "half": make_mp4(d / "half.mp4", size=(96, 96), face="half"),
        "noface": make_mp4(d / "noface.mp4"),
        "silent": make_mp4(d / "silent.mp4", audio="silent"),
        "noaudio": make_mp4(d / "noaudio.mp4", audio=None),
        "corrupt": corrupt,
    }


def row(clip_id: str, path: Path, text: str = SENTENCE, **extra: object) -> dict:
    return {"clip_id": clip_id, "media": str(path), "start": "", "end": "", "text": text} | extra


# --- extractors -------------------------------------------------------------------------


def test_audio_features_shape_and_intervals(media: dict[str, Path]) -> None:
    y = decode_audio(media["face"], 16000)
    feats, ivals, names = extract_audio(y, 16000, 0.04)
    assert feats.dtype == np.float32 and feats.shape[1] == 33 == len(names)
    assert names == list(AUDIO_DIMS) and names[20] == "zcr"
    assert feats.shape[0] == len(y) // 640 + 1
    np.testing.assert_allclose(ivals[:3], [[0, 0.04], [0.04, 0.08], [0.08, 0.12]])
    assert np.isfinite(feats).all()
    # a pure 440 Hz tone: the A chroma bin dominates
    assert names[21 + int(np.argmax(feats[5:-5, 21:].mean(axis=0)))] == "chroma_A"


def test_silent_audio_is_audio_absent(media: dict[str, Path]) -> None:
    with pytest.raises(SilentAudio, match="silent audio"):
        extract_audio(decode_audio(media["silent"], 16000), 16000, 0.04)


def test_vision_rows_flag_faces_and_keep_no_face_frames(media: dict[str, Path]) -> None:
    feats, ivals, names, warnings = extract_vision(iter_frames(media["half"], 6), 6)
    assert feats.shape == (6, VISION_DIM) and len(names) == VISION_DIM and names[0] == "face"
    np.testing.assert_allclose(ivals[:, 0], np.arange(6) / 6)
    np.testing.assert_allclose(ivals[:, 1] - ivals[:, 0], 1 / 6)
    assert feats[:2, 0].tolist() == [1.0, 1.0] and feats[-2:, 0].tolist() == [0.0, 0.0]
    assert not feats[-1].any()  # no face: flag 0 and zeros, the row kept
    face = dict(zip(names, feats[0]))
    # geometry in inter-ocular units: the eyes sit about one unit apart, mouth narrower
    assert face["eyes_263_x"] - face["eyes_33_x"] > 1.0
    assert 0.5 < face["mouth_width"] < 1.5 and abs(face["head_roll"]) < 0.3
    assert warnings == []


def test_no_face_in_any_frame_warns(media: dict[str, Path]) -> None:
    feats, _, _, warnings = extract_vision(iter_frames(media["noface"], 6), 6)
    assert len(feats) == 6 and not feats.any()
    assert warnings == [NO_FACE_WARNING]


def test_text_words_tokens_and_embeddings() -> None:
    t = extract_text(SENTENCE, 2.0, "minilm", "minilm")
    assert t.words == ["I", "really", "love", "this", "movie", "it's", "great"]
    assert t.word_intervals.shape == (7, 2) and t.word_intervals[-1, 1] == 2.0
    widths = t.word_intervals[:, 1] - t.word_intervals[:, 0]
    np.testing.assert_allclose(widths / widths.sum(), np.array([1, 6, 4, 4, 5, 4, 5]) / 29)
    tok = load_tokenizer("minilm")
    assert t.tokens[:, 0].tolist() == tok(SENTENCE)["input_ids"]  # full, with [CLS]/[SEP]
    assert t.tokens[0, 0] == tok.cls_token_id and t.tokens[-1, 0] == tok.sep_token_id
    np.testing.assert_allclose(np.diff(t.token_intervals, axis=1), 2.0 / len(t.tokens))
    assert t.embeddings.shape == (7, 384) and t.embeddings.dtype == np.float32
    # a single-subword word's embedding is that token's hidden state in context
    import torch

    enc = tok(t.words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = frozen_encoder("minilm")(**enc).last_hidden_state[0]
    pos = enc.word_ids(0).index(4)
    np.testing.assert_allclose(t.embeddings[4], hidden[pos].numpy(), atol=1e-5)


def test_text_empty_transcript_and_spread() -> None:
    for empty in ("", "   \n\t"):
        with pytest.raises(ExtractError, match="empty transcript"):
            extract_text(empty, 1.0, "minilm", "minilm")
    with pytest.raises(ExtractError, match="no words"):
        extract_text("?! ...", 1.0, "minilm", "minilm")
    np.testing.assert_allclose(spread_by_length([1, 3], 2.0), [[0, 0.5], [0.5, 2.0]])


# --- per-clip cache ---------------------------------------------------------------------


def test_extract_clip_caches_and_recomputes_only_changed(
    media: dict[str, Path], tmp_path: Path
) -> None:
    cache, cfg = tmp_path / "cache", make_cfg()
    clip = row("v$_$0", media["face"])
    first = extract.extract_clip(clip, cfg, cache)
    assert first["status"] == {m: "computed" for m in extract.MODALITIES}
    assert first["errors"] == [] and first["seconds"] == pytest.approx(1.0, abs=0.1)
    again = extract.extract_clip(clip, cfg, cache)
    assert again["status"] == {m: "cached" for m in extract.MODALITIES}
    hop = make_cfg(audio={"feature_set": "librosa", "sample_rate": 16000, "hop_seconds": 0.05})
    assert extract.extract_clip(clip, hop, cache)["status"] == {
        "text": "cached",
        "audio": "computed",
        "vision": "cached",
    }
    # max_tokens only truncates later: not part of the text key
    longer = make_cfg(text={"tokenizer": "minilm", "encoder": "minilm", "max_tokens": 64,
                            "timing": "spread"})
    assert extract.extract_clip(clip, longer, cache)["status"]["text"] == "cached"
    assert extract.extract_clip(clip | {"text": "so sad"}, cfg, cache)["status"] == {
        "text": "computed",
        "audio": "cached",
        "vision": "cached",
    }
    # an interrupted run: an entry that never got written is recomputed, the rest kept
    next((cache / "vision").glob("*.npz")).unlink()
    assert extract.extract_clip(clip, cfg, cache)["status"]["vision"] == "computed"
    assert not list(cache.rglob("*.tmp"))


def test_changed_media_bytes_recompute(media: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(media["noface"].read_bytes())
    cfg, clip = make_cfg(), row("v$_$1", path)
    key = extract.clip_key(clip, "audio", cfg)
    extract.extract_clip(clip, cfg, tmp_path / "cache")
    path.write_bytes(media["face"].read_bytes())
    assert extract.clip_key(clip, "audio", cfg) != key
    assert set(extract.extract_clip(clip, cfg, tmp_path / "cache")["status"].values()) == {
        "computed"
    }


def test_bad_clips_are_reported_not_raised(media: dict[str, Path], tmp_path: Path) -> None:
    cfg, cache = make_cfg(), tmp_path / "cache"
    bad = extract.extract_clip(row("v$_$2", media["corrupt"]), cfg, cache)
    assert bad["status"] == {m: "failed" for m in extract.MODALITIES}
    assert all("corrupt.mp4" in e["error"] for e in bad["errors"])
    mute = extract.extract_clip(row("v$_$3", media["noaudio"], text=" "), cfg, cache)
    assert mute["status"] == {"text": "failed", "audio": "failed", "vision": "computed"}
    assert {e["modality"]: (e["severity"], e["error"]) for e in mute["errors"]} == {
        "text": ("error", "empty transcript"),
        "audio": ("error", f"{media['noaudio']}: no audio stream"),
        "vision": ("warning", NO_FACE_WARNING),
    }
    noface = extract.extract_clip(row("v$_$4", media["noface"]), cfg, cache)
    assert noface["status"]["vision"] == "computed"
    assert noface["errors"] == [
        {"modality": "vision", "severity": "warning", "error": NO_FACE_WARNING}
    ]
    # the warning survives a cached re-run
    assert extract.extract_clip(row("v$_$4", media["noface"]), cfg, cache)["errors"] == (
        noface["errors"]
    )


def test_fail_fast_names_the_clip(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match=r"clip v\$_\$9 .*audio: silent audio"):
        extract.extract_clip(row("v$_$9", media["silent"]), make_cfg(fail_fast=True), tmp_path)


# --- outputs and the stage entry point --------------------------------------------------


def _stage(tmp_path: Path, media: dict[str, Path], names: list[str], **overrides: object):
    params = load_params(
        ROOT / "params.yaml",
        overrides={"dataset.name": "t", "extract.workers": 2, "extract.text.timing": "spread",
                   **overrides},
    )
    paths = Paths.from_params(params, base=tmp_path)
    rows = [row(f"vid$_${i}", media[n]) for i, n in enumerate(names)]
    paths.manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows).assign(split="train", label=0.5).to_csv(paths.manifest, index=False)
    return params, paths


def test_run_writes_mmsdk_readable_csd(media: dict[str, Path], tmp_path: Path) -> None:
    from mmsdk import mmdatasdk

    params, paths = _stage(tmp_path, media, ["face", "half", "noface", "silent"])
    (paths.csd_dir).mkdir(parents=True)
    (paths.csd_dir / "opensmile.csd").write_bytes(b"stale")
    summary = extract.run(params, paths)
    assert summary["clips"] == 4 and summary["computed_vision"] == 4
    assert summary["failed_audio"] == 1 and summary["warnings"] == 2
    assert summary["throughput"] > 0 and summary["media_seconds"] == pytest.approx(4, abs=0.3)
    names = sorted(p.name for p in paths.csd_dir.glob("*.csd"))
    assert names == [
        "facemesh.csd",
        "librosa.csd",
        "tokens.csd",
        "word_embeddings.csd",
        "words.csd",
    ]
    with read_csd(paths.csd_dir / "librosa.csd") as csd:
        assert csd.keys() == ["vid$_$0", "vid$_$1", "vid$_$2"]  # the silent clip is absent
        assert csd.metadata["dimension names"] == list(AUDIO_DIMS)
        assert csd.metadata["dataset name"] == "t"
        assert csd.metadata["extractor params"]["audio"]["hop_seconds"] == 0.04
    with read_csd(paths.csd_dir / "words.csd") as csd:
        assert decode_words(csd.get("vid$_$3")[0])[:2] == ["I", "really"]
    report = pd.read_csv(paths.extract_errors)
    assert list(report.columns) == list(EXTRACT_ERROR_COLUMNS)
    assert sorted(zip(report["clip_id"], report["modality"], report["severity"])) == [
        ("vid$_$2", "vision", "warning"),
        ("vid$_$3", "audio", "error"),
        ("vid$_$3", "vision", "warning"),
    ]
    for name in names:
        seq = mmdatasdk.computational_sequence(str(paths.csd_dir / name))  # validates
        try:
            assert len(seq.keys()) == (3 if name == "librosa.csd" else 4)
        finally:
            seq.h5handle.close()
    warm = extract.run(params, paths)
    assert warm["cached_audio"] == 3 and warm["computed_text"] == 0


def test_too_many_failures_raise_after_the_report(
    media: dict[str, Path], tmp_path: Path
) -> None:
    params, paths = _stage(
        tmp_path, media, ["corrupt", "silent", "noaudio"], **{"extract.max_failed_fraction": 0.5}
    )
    with pytest.raises(ExtractionFailed, match=r"3 of 3 clips failed") as info:
        extract.run(params, paths)
    assert "audio" in str(info.value) and "corrupt.mp4" in str(info.value)
    report = pd.read_csv(paths.extract_errors)
    assert set(report["clip_id"]) == {"vid$_$0", "vid$_$1", "vid$_$2"}
    assert not paths.csd_dir.exists()


def test_windowed_clip_times_start_at_zero(media: dict[str, Path], tmp_path: Path) -> None:
    cfg, cache = make_cfg(), tmp_path / "cache"
    clip = row("v$_$5", media["face"], start="0.25", end="0.75")
    result = extract.extract_clip(clip, cfg, cache)
    assert result["seconds"] == pytest.approx(0.5)
    assert set(result["status"].values()) == {"computed"}
    with np.load(cache / "vision" / f"{result['keys']['vision']}.npz") as npz:
        np.testing.assert_allclose(npz["intervals"][:, 0], [0, 1 / 6, 2 / 6])
    with np.load(cache / "audio" / f"{result['keys']['audio']}.npz") as npz:
        assert len(npz["features"]) == pytest.approx(0.5 / 0.04 + 1, abs=1)
        assert npz["intervals"][0, 0] == 0.0
    with np.load(cache / "text" / f"{result['keys']['text']}.npz") as npz:
        assert npz["word_intervals"][-1, 1] == pytest.approx(0.5)
    whole = extract.clip_key(row("v$_$5", media["face"]), "audio", cfg)
    assert result["keys"]["audio"] != whole
