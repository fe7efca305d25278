"""Demo audio: eSpeak NG through ctypes, the prosody driven by the audio view."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from tasks.demo.views import VIEW_CLIP
from tasks.speech import espeak
from tasks.speech.espeak import WordEvent
from tasks.speech.words import split_word_spans

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

def speak(
    text: str, voice: str, rate: int, pitch: int, range_: int, volume: int
) -> tuple[np.ndarray, int, list[WordEvent]]:
    """eSpeak NG's 16-bit samples of ``text`` (at its native rate) and each word's time in
    them (tasks/speech/espeak.py), reproducibly.

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
                    eng = espeak.engine()
                    eng.lib.espeak_ng_SetRandSeed(1)
                    pcm, words = eng.speak(text, voice, rate, pitch, range_, volume)
                    spans = np.array([[w.text_start, w.text_end, w.start, w.end] for w in words],
                                     np.float64).reshape(-1, 4)
                    header = np.array([eng.sample_rate, len(pcm), len(spans)], np.int64)
                    pipe.write(header.tobytes() + spans.tobytes()
                               + pcm.astype(np.int16).tobytes())
                    status = 0
                except Exception as err:  # the parent raises it with the clip's name
                    pipe.write(str(err).encode())
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or len(payload) < 24:
        why = payload.decode(errors="replace") if status else "no samples"
        raise RuntimeError(f"eSpeak NG failed on {text!r} with voice {voice!r}: {why}")
    sample_rate, n, n_words = (int(v) for v in np.frombuffer(payload[:24], np.int64))
    spans = np.frombuffer(payload[24 : 24 + 32 * n_words], np.float64).reshape(-1, 4)
    pcm = np.frombuffer(payload[24 + 32 * n_words :], np.int16)
    if len(pcm) != n:
        raise RuntimeError(f"eSpeak NG returned {len(pcm)} of {n} samples for {text!r}")
    words = [WordEvent(int(a), int(b), float(s), float(e)) for a, b, s, e in spans]
    return pcm, sample_rate, words


def prosody(view: float, voice: Voice) -> dict[str, int]:
    """eSpeak rate / pitch / range / volume for an audio view: positive = higher, livelier."""
    v = float(np.clip(view, -VIEW_CLIP, VIEW_CLIP))
    return {
        "rate": int(np.clip(round(voice.rate + 8 * v), 110, 260)),
        "pitch": int(np.clip(round(voice.pitch + 8 * v), 5, 95)),
        "range_": int(np.clip(round(50 + 11 * v), 5, 99)),
        "volume": int(np.clip(round(100 + 22 * v), 30, 190)),
    }


def make_audio(text: str, view: float, voice: Voice) -> tuple[np.ndarray, list[tuple]]:
    """``text`` spoken with prosody from ``view``: float32 mono at AUDIO_RATE, padded; and
    each transcript word (``split_word_spans``) with its true start and end in seconds."""
    from scipy.signal import resample_poly

    pcm, rate, events = speak(text, voice.name, **prosody(view, voice))
    g = math.gcd(AUDIO_RATE, rate)
    speech = resample_poly(pcm.astype(np.float32) / 32768.0, AUDIO_RATE // g, rate // g)
    speech = speech.astype(np.float32)
    pad = np.zeros(int(SPEECH_PAD * AUDIO_RATE), np.float32)
    return np.clip(np.concatenate([pad, speech, pad]), -1.0, 1.0), word_times(text, events)


def word_times(text: str, events: list[WordEvent]) -> list[tuple[str, float, float]]:
    """Each word of ``text`` as the pipeline splits it, timed by the eSpeak words that cover
    its characters (a number eSpeak reads as several words spans them all), in seconds of
    the padded audio; a word eSpeak did not voice gets NaN times."""
    out = []
    for word, a, b in split_word_spans(text):
        hit = [e for e in events if e.text_start < b and e.text_end > a]
        if hit:
            start = min(e.start for e in hit) + SPEECH_PAD
            end = max(e.end for e in hit) + SPEECH_PAD
        else:
            start = end = float("nan")
        out.append((word, round(start, 4), round(end, 4)))
    return out
