"""Feature set ``librosa`` (audio): the SIMS/MMSA-FET set (20 MFCC + ZCR + 12 chroma-CQT).

One row every ``hop_seconds``; row ``i`` covers ``[i·hop, (i+1)·hop]`` seconds from the clip
start (librosa centres frame ``i`` on sample ``i·hop``, so the row describes the audio
around the start of its interval, as in MMSA-FET).

Speed: chroma-CQT is the slow part. librosa's CQT halves the signal once per octave, which
is fast only when the hop is a multiple of ``2**(octaves-1)``; any other hop falls back to
full-rate filtering (measured 1.2 s vs 0.04 s for 3 s at 16 kHz). So the CQT runs at the
nearest such hop and each output row takes the chroma column closest to its time (exact at
the default 640-sample hop). All other features are computed at the requested hop.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from tasks.contracts import ExtractError, SilentAudio
from tasks.features import register
from tasks.features.media import ClipInput, decode_audio

N_MFCC = 20
N_CHROMA = 12
DIM_NAMES: tuple[str, ...] = (
    *(f"mfcc_{i}" for i in range(N_MFCC)),
    "zcr",
    *(f"chroma_{p}" for p in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")),
)
# A clip shorter than an FFT window (and the CQT's lowest octaves, halved once per octave)
# is zero-padded by librosa, which warns each time: the padding is what we want, the message
# only noise in the stage's log. One filter for the process (catch_warnings is not
# thread-safe, and clips are extracted on several threads).
warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal",
                        module="librosa")
# RMS below this (≈ -80 dBFS) is digital silence: MFCCs of it are log-of-zero noise.
SILENCE_RMS = 1e-4
_CQT_FMIN = 32.70319566257483  # C1, librosa's default


def _cqt_octaves(sample_rate: int) -> int:
    """Octaves above C1 that stay under Nyquist (with room for the filters' bandwidth)."""
    return max(1, min(7, int(math.floor(math.log2(0.45 * sample_rate / _CQT_FMIN)))))


def _chroma(y: np.ndarray, sample_rate: int, hop: int, n_rows: int) -> np.ndarray:
    """(n_rows, 12) chroma-CQT sampled at multiples of ``hop`` samples."""
    import librosa

    octaves = _cqt_octaves(sample_rate)
    step = 2 ** (octaves - 1)
    cqt_hop = max(step, int(round(hop / step)) * step)
    chroma = librosa.feature.chroma_cqt(
        y=y, sr=sample_rate, hop_length=cqt_hop, n_octaves=octaves, fmin=_CQT_FMIN
    )  # (12, m)
    cols = np.clip(np.rint(np.arange(n_rows) * hop / cqt_hop).astype(int), 0, chroma.shape[1] - 1)
    return chroma[:, cols].T


def extract_audio(
    samples: np.ndarray, sample_rate: int, hop_seconds: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features (n, 33) float32, intervals (n, 2), dim names)`` of mono samples."""
    import librosa

    y = np.asarray(samples, dtype=np.float32).reshape(-1)
    if y.size == 0:
        raise ExtractError("no audio samples")
    if not np.isfinite(y).all():
        raise ExtractError("audio has NaN/Inf samples")
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms < SILENCE_RMS:  # no sound: the modality is absent, as without an audio stream
        raise SilentAudio(f"silent audio (RMS {rms:.2e} < {SILENCE_RMS:.0e}): no sound")
    hop = max(1, int(round(hop_seconds * sample_rate)))
    n_fft = 2048 if sample_rate >= 16000 else 1024
    mfcc = librosa.feature.mfcc(y=y, sr=sample_rate, n_mfcc=N_MFCC, hop_length=hop, n_fft=n_fft)
    zcr = librosa.feature.zero_crossing_rate(y, hop_length=hop)
    n = min(mfcc.shape[1], zcr.shape[1])
    chroma = _chroma(y, sample_rate, hop, n)
    features = np.concatenate([mfcc[:, :n].T, zcr[:, :n].T, chroma], axis=1).astype(np.float32)
    if not np.isfinite(features).all():
        raise ExtractError("audio features have NaN/Inf values")
    duration = y.size / sample_rate
    starts = np.arange(n, dtype=np.float64) * hop / sample_rate
    ends = np.minimum(starts + hop / sample_rate, max(duration, starts[-1]))
    return features, np.stack([starts, ends], axis=1), list(DIM_NAMES)


def _warm(section: Any) -> None:
    """librosa's feature modules (scipy.signal, numba) are imported on first use: now."""
    import librosa.feature.spectral  # noqa: F401


@register(
    "librosa",
    modality="audio",
    keys=("sample_rate", "hop_seconds"),
    description="librosa 20 MFCC + zero-crossing rate + 12 chroma-CQT per hop",
    dims=lambda section, width: list(DIM_NAMES),
    # computed with one BLAS thread (tasks.extract.single_threaded): features from before,
    # with the machine's default thread count, differ in the last bits and are recomputed
    identity=lambda section: {"blas_threads": 1},
    warm=_warm,
)
def compute(clip: ClipInput, section: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """One clip's rows at ``extract.audio.hop_seconds`` from its mono audio."""
    notes: list[str] = []
    samples = decode_audio(clip.media, section.sample_rate, clip.start, clip.end, notes)
    features, intervals, _ = extract_audio(samples, section.sample_rate, section.hop_seconds)
    return {"features": features, "intervals": intervals}, notes
