"""Forced alignment of a transcript on speech, offline: each word's time.

**Forced alignment** (``align``) uses PocketSphinx 5 with the US English acoustic model and
CMU pronouncing dictionary its wheel ships: ``Decoder.set_align_text`` over 16 kHz mono
16-bit PCM gives each word's frames (100 per second). Three details make it dependable:

- *Pronunciations*: a word the dictionary lacks (a name, ``42``, ``café``) gets one from
  eSpeak NG's English rules mapped to ARPAbet (tasks/speech/espeak.py) and is added to
  the decoder; a word with none that means anything (a non-Latin script) is left out of
  the alignment and timed between its aligned neighbours (``interpolated``). None is
  dropped; each kind is counted.
- *A noise floor*: digitally clean audio (synthetic speech, exact-zero padding) upsets the
  MFCC front end's noise estimate and CMN; before alignment a seeded Gaussian floor 30 dB
  below the clip's RMS is added (deterministic, far under any recording's own noise). On
  the demo corpus that took alignment failures from about half the clips to none
  (benchmarks/bench_alignment.py measures it).
- *Bounded memory*: audio longer than ``LONG_AUDIO`` seconds is aligned window by window
  (about ``WINDOW`` seconds each, cut at the quietest frame): a grammar of the next words
  in order that may stop after any of them times what the window holds; the words that end
  before its last ``MARGIN`` second are kept and the next window starts where they end. The
  decoder never holds more than one window (measured: 12.4 minutes of demo speech, 2,049
  words, all timed at 72x real time, the same word-boundary error as clip by clip).

An alignment that does not reach the end of the transcript (silence, music, a transcript of
other speech), or whose acoustic score is below ``MIN_SCORE`` nats per frame, raises
:class:`AlignmentFailed` with the reason; the text feature set then spreads that clip's
words and records the reason as a warning.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tasks.contracts import ExtractError
from tasks.speech import SAMPLE_RATE, espeak, pcm16

FRAME_SECONDS = 0.01  # PocketSphinx's frame rate: 100 per second
NOISE_FLOOR_DB = 30.0
MIN_SCORE = -6.0  # mean acoustic log-likelihood per frame (nats); demo speech: -4 to -1
LONG_AUDIO = 90.0
WINDOW = 30.0
MARGIN = 1.0
FILLERS = frozenset({"<s>", "</s>", "<sil>", "(NULL)", "[NOISE]", "[SPEECH]"})


class AlignmentFailed(ExtractError):
    """Forced alignment could not time the transcript on this audio; the message says why."""


@dataclass(frozen=True)
class Alignment:
    """Word intervals of a transcript and how each word got its time."""

    intervals: np.ndarray  # (n_words, 2) seconds
    aligned: int  # words the aligner timed (pronounced ones included)
    pronounced: int  # of those, words given an eSpeak pronunciation
    interpolated: int  # words without a pronunciation, timed between aligned neighbours
    score: float  # mean acoustic log-likelihood per frame of the aligned words (nats)


def with_noise_floor(samples: np.ndarray, db: float | None = None) -> np.ndarray:
    """``samples`` plus seeded Gaussian noise ``db`` (default ``NOISE_FLOOR_DB``; None there:
    none) below their RMS (see the module docstring)."""
    y = np.asarray(samples, dtype=np.float32)
    db = NOISE_FLOOR_DB if db is None else db
    if db is None:
        return y
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    sd = max(rms * 10 ** (-db / 20), 1.0 / 32768)  # at least one 16-bit step
    noise = np.random.default_rng(0).normal(0.0, sd, y.size).astype(np.float32)
    return y + noise


_LOCAL = threading.local()
# Goes into the text feature set's cache key: 2 = the front end reset per clip (1 let a
# clip's word times depend on the clips aligned before it on the same thread).
FRONT_END_VERSION = 2


def _aligner() -> Any:
    """This thread's alignment decoder (a Decoder is not thread-safe; loading one ~0.3 s)."""
    decoder = getattr(_LOCAL, "aligner", None)
    if decoder is None:
        from pocketsphinx import Decoder

        decoder = _LOCAL.aligner = Decoder(samprate=SAMPLE_RATE, lm=None, loglevel="FATAL")
    return decoder


def dictionary_form(word: str) -> str:
    """A transcript word as the CMU dictionary spells words: lowercase, straight apostrophe."""
    return word.lower().replace("’", "'").replace("‘", "'")


def _prepare(decoder: Any, words: list[str]) -> tuple[list[str | None], int]:
    """The decoder's token of each word (None: no pronunciation) and how many of them are
    not in the shipped dictionary but got an eSpeak pronunciation."""
    tokens: list[str | None] = []
    pronounced = 0
    shipped = _dictionary_words()
    for word in words:
        token = dictionary_form(word)
        if not token or any(ch.isspace() or ch in "()" for ch in token):
            tokens.append(None)
            continue
        if token not in shipped:
            if decoder.lookup_word(token) is None:  # not added to this decoder before
                phones = espeak.pronunciation(word)
                if phones is None:
                    tokens.append(None)
                    continue
                decoder.add_word(token, " ".join(phones), True)
            pronounced += 1
        tokens.append(token)
    return tokens, pronounced


@lru_cache(maxsize=1)
def _dictionary_words() -> frozenset[str]:
    """The words of the shipped CMU dictionary (to tell added words from its own)."""
    import os

    from pocketsphinx import get_model_path

    path = os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.split(" ", 1)[0].split("(", 1)[0] for line in fh if line.strip())


def _run(decoder: Any, text: str, samples: np.ndarray) -> tuple[list[tuple], bool]:
    """One alignment pass: ``[(token, start_frame, end_frame, log_score)]`` of the words the
    best path holds, and whether it reached the end of ``text``."""
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(pcm16(samples), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    words = []
    for seg in decoder.seg() or ():  # None when no path survived at all
        if seg.word in FILLERS:
            continue
        score = math.log(seg.ascore) if seg.ascore > 0 else None  # None: underflow
        words.append((seg.word.split("(", 1)[0], seg.start_frame, seg.end_frame, score))
    return words, hyp is not None and hyp.hypstr == text


def _score(segments: list[tuple]) -> float:
    scored = [(s, e - b + 1) for _, b, e, s in segments if s is not None]
    frames = sum(n for _, n in scored)
    return sum(s for s, _ in scored) / frames if frames else float("nan")


def _align_tokens(
    decoder: Any, samples: np.ndarray, tokens: list[str]
) -> tuple[list[tuple[float, float]], float]:
    """Start/end seconds of every token (all aligned) and the mean score; or AlignmentFailed."""
    duration = len(samples) / SAMPLE_RATE
    if duration <= LONG_AUDIO:
        segments, complete = _run(decoder, " ".join(tokens), samples)
        if not complete:
            last = segments[-1][0] if segments else None
            where = f"after {last!r}" if last else "at the first word"
            raise AlignmentFailed(
                f"forced alignment did not reach the end of the transcript (stopped {where} "
                f"of {len(tokens)} words): the speech does not match it, or there is none"
            )
        return [(b * FRAME_SECONDS, (e + 1) * FRAME_SECONDS) for _, b, e, _ in segments], \
            _score(segments)
    return _align_windows(decoder, samples, tokens)


# Windows tried in turn when one finds no word: (seconds, candidate words × the file's rate)
_ATTEMPTS: tuple[tuple[float, float], ...] = ((WINDOW, 1.6), (1.5 * WINDOW, 1.6),
                                              (2 * WINDOW, 2.0), (WINDOW, 3.0))


def _quietest(energy: np.ndarray, a: float, b: float) -> float:
    """The time (s) of the quietest 10 ms frame in ``[a, b)``: a window ends in a pause."""
    i, j = int(a / FRAME_SECONDS), max(int(a / FRAME_SECONDS) + 1, int(b / FRAME_SECONDS))
    return (i + int(np.argmin(energy[i:j]))) * FRAME_SECONDS


def _window(
    decoder: Any, samples: np.ndarray, tokens: list[str], t0: float, t1: float, final: bool
) -> list[tuple]:
    """Align the longest prefix of ``tokens`` spoken in ``[t0, t1)``: a grammar of the words
    in order that may end after any of them (the last window must say them all)."""
    n = len(tokens)
    transitions: list[tuple] = [(i, i + 1, 1.0, tok) for i, tok in enumerate(tokens)]
    if not final:
        transitions += [(i, n, 1e-3) for i in range(1, n)]  # stop after word i
    decoder.add_fsg("_window", decoder.create_fsg("_window", 0, n, transitions))
    decoder.activate_search("_window")
    decoder.start_utt()
    decoder.process_raw(pcm16(samples[int(t0 * SAMPLE_RATE): int(t1 * SAMPLE_RATE)]),
                        full_utt=True)
    decoder.end_utt()
    segments = []
    for seg in decoder.seg() or ():
        if seg.word not in FILLERS:
            score = math.log(seg.ascore) if seg.ascore > 0 else None
            segments.append((seg.word.split("(", 1)[0], seg.start_frame, seg.end_frame, score))
    if final:
        return segments if len(segments) == n else []
    limit = (t1 - t0) - MARGIN  # words near the cut may be squeezed: the next window redoes them
    return [s for s in segments if (s[2] + 1) * FRAME_SECONDS <= limit]


def _align_windows(
    decoder: Any, samples: np.ndarray, tokens: list[str]
) -> tuple[list[tuple[float, float]], float]:
    """Long audio, one window at a time (see the module docstring): each window ends at the
    quietest frame of its last seconds, takes more words than it can hold, and keeps those
    it timed before its last ``MARGIN`` seconds; the next starts where they end."""
    total = len(samples) / SAMPLE_RATE
    rate = len(tokens) / total  # words per second over the file
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    y = samples[: len(samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    energy = np.sqrt(np.mean(y * y, axis=1))
    del y
    times: list[tuple[float, float]] = []
    kept: list[tuple] = []
    t0, pos = 0.0, 0
    while pos < len(tokens):
        segments: list[tuple] = []
        for seconds, extra in _ATTEMPTS:
            final = t0 + seconds >= total
            t1 = total if final else _quietest(energy, t0 + seconds - 6.0, t0 + seconds)
            take = len(tokens) - pos if final else min(
                len(tokens) - pos, math.ceil((t1 - t0) * rate * extra) + 5)
            segments = _window(decoder, samples, tokens[pos: pos + take], t0, t1, final)
            if segments:
                break
        if not segments:
            raise AlignmentFailed(
                f"forced alignment found none of the next words ({' '.join(tokens[pos:pos + 5])}"
                f" ...) after {t0:.1f} s of {total:.1f} s: the speech does not match the "
                "transcript there"
            )
        times += [(t0 + b * FRAME_SECONDS, t0 + (e + 1) * FRAME_SECONDS)
                  for _, b, e, _ in segments]
        kept += segments
        pos += len(segments)
        t0 = times[-1][1]
    return times, _score(kept)


def _interpolate(
    times: list[tuple[float, float] | None], weights: list[int], duration: float
) -> np.ndarray:
    """Fill the ``None`` entries between their timed neighbours, by character length.

    A run of untimed words shares the gap between the neighbours; when the gap is too small
    (under 50 ms a word) the run shares it with the timed word before it (after it at the
    start), so every word keeps a positive, ordered interval.
    """
    out = np.zeros((len(times), 2))
    i = 0
    while i < len(times):
        if times[i] is not None:
            out[i] = times[i]
            i += 1
            continue
        j = i
        while j < len(times) and times[j] is None:
            j += 1  # times[i:j] untimed
        lo = out[i - 1, 1] if i > 0 else 0.0
        hi = times[j][0] if j < len(times) else duration
        members = list(range(i, j))
        if hi - lo < 0.05 * len(members):
            if i > 0:  # share with the timed word before
                lo = out[i - 1, 0]
                members = [i - 1, *members]
            elif j < len(times):  # share with the timed word after
                hi = times[j][1]
                members = [*members, j]
                out[j] = times[j]
        w = np.array([max(1, weights[k]) for k in members], dtype=np.float64)
        edges = lo + np.concatenate([[0.0], np.cumsum(w)]) / w.sum() * max(hi - lo, 1e-3)
        for k, a, b in zip(members, edges[:-1], edges[1:], strict=True):
            out[k] = (a, b)
        i = members[-1] + 1
    return out


def align(samples: np.ndarray, words: list[str]) -> Alignment:
    """Time ``words`` (a transcript split into words) on 16 kHz mono ``samples``."""
    if not words:
        raise AlignmentFailed("no words to align")
    y = np.asarray(samples, dtype=np.float32).reshape(-1)
    if y.size < SAMPLE_RATE // 10:
        raise AlignmentFailed(f"{y.size / SAMPLE_RATE:.3f} s of audio is too short to align")
    decoder = _aligner()
    # The front end (noise estimate, CMN) adapts across utterances: reset it, so a clip's
    # times do not depend on which clips this thread aligned before (worker scheduling).
    decoder.reinit_feat()
    tokens, pronounced = _prepare(decoder, words)
    timed = [t for t in tokens if t is not None]
    if not timed:
        raise AlignmentFailed("no word of the transcript has an English pronunciation")
    spans, score = _align_tokens(decoder, with_noise_floor(y), timed)
    if not score >= MIN_SCORE:  # NaN (every word underflowed) passes: nothing to judge
        if not math.isnan(score):
            raise AlignmentFailed(
                f"forced alignment scored {score:.2f} nats/frame, below {MIN_SCORE}: the speech "
                "does not match the transcript"
            )
    it = iter(spans)
    times = [next(it) if t is not None else None for t in tokens]
    intervals = _interpolate(times, [len(w) for w in words], y.size / SAMPLE_RATE)
    return Alignment(intervals=intervals, aligned=len(timed), pronounced=pronounced,
                     interpolated=len(words) - len(timed), score=float(score))


# --------------------------------------------------------------------------- recognition
