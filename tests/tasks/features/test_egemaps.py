"""openSMILE eGeMAPS v02 LLDs: offline, shapes, frame times, errors, extract wiring."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import features
from tasks.contracts import ExtractError
from tasks.features.egemaps import extract_egemaps, feature_names
from tasks.features.media import ClipInput

SR = 16000


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)


def test_tone_shapes_and_intervals() -> None:
    feats, iv, names = extract_egemaps(_tone(220.0), SR)
    assert feats.dtype == np.float32 and feats.shape[1] == 25 == len(names)
    assert names[0] == "Loudness_sma3" and "F0semitoneFrom27.5Hz_sma3nz" in names
    assert 90 <= feats.shape[0] <= 100  # 10 ms hop, 20 ms (60 ms for pitch) windows
    assert np.allclose(np.diff(iv[:, 0]), 0.01) and iv[0, 0] == 0.0
    assert np.all(iv[:, 1] > iv[:, 0]) and iv[-1, 1] <= 1.0 + 1e-6
    f0 = feats[20:-20, names.index("F0semitoneFrom27.5Hz_sma3nz")]
    # 220 Hz = 12·log2(220/27.5) = 36 semitones above 27.5 Hz
    assert np.median(f0) == pytest.approx(36.0, abs=0.5)
    louder, _, _ = extract_egemaps(_tone(220.0, amp=0.6), SR)
    assert louder[20:-20, 0].mean() > feats[20:-20, 0].mean()


def test_errors() -> None:
    with pytest.raises(ExtractError, match="no audio"):
        extract_egemaps(np.zeros(0), SR)
    with pytest.raises(ExtractError, match="NaN"):
        extract_egemaps(np.array([0.0, np.nan] * 800), SR)


def test_registered_as_the_audio_feature_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.features import egemaps
    from tasks.params import load_params

    params = load_params(overrides={"extract.audio.feature_set": "egemaps"})
    chosen = features.chosen(params.extract, "audio")
    assert chosen.name == "egemaps" and chosen.modality == "audio"
    monkeypatch.setattr(egemaps, "decode_audio", lambda *a, **k: _tone(180.0, 0.5))
    arrays, _ = chosen.compute(ClipInput({"clip_id": "c", "media": "x.mp4"}),
                               params.extract.audio)
    assert arrays["features"].shape[1] == 25
    (output,) = chosen.outputs
    assert output.name == "egemaps"
    assert output.dims(params.extract.audio, 25) == feature_names(SR)
    # hop_seconds does not change eGeMAPS frames, so it is not part of the cache key
    assert "hop_seconds" not in chosen.key_params(params.extract.audio)
