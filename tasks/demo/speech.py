"""Demo audio: eSpeak NG through ctypes, the prosody driven by the audio view."""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tasks.demo.views import VIEW_CLIP

AUDIO_RATE = 16000  # AAC stream rate; the extract stage's default librosa rate, no resampling
SPEECH_PAD = 0.2  # seconds of silence before and after the sentence



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
