"""Speech recognition, offline: the words a clip says, with their times.

``recognize``: ``pocketsphinx`` (its US English language model, speech regions found by its
voice activity detector, decoded one at a time) or ``whisper`` (any Hugging Face Whisper
checkpoint, by local path or a name in the local cache, through transformers'
speech-recognition pipeline with word timestamps; never downloaded here).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.contracts import ExtractError
from tasks.speech import SAMPLE_RATE, pcm16
from tasks.speech.alignment import FILLERS, FRAME_SECONDS, with_noise_floor

ENGINES = ("pocketsphinx", "whisper")
_LOCAL = threading.local()


@dataclass(frozen=True)
class Recognition:
    """What speech recognition heard: words with their intervals (seconds)."""

    words: list[str]
    intervals: np.ndarray  # (n_words, 2)
    engine: str


def _recognizer() -> Any:
    """This thread's recognition decoder (US English language model)."""
    decoder = getattr(_LOCAL, "recognizer", None)
    if decoder is None:
        from pocketsphinx import Decoder

        decoder = _LOCAL.recognizer = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    return decoder


def _recognize_pocketsphinx(samples: np.ndarray) -> Recognition:
    import io

    from pocketsphinx import Segmenter

    decoder = _recognizer()
    decoder.reinit_feat()  # as in align(): no state from the clips recognised before
    words: list[str] = []
    times: list[tuple[float, float]] = []
    segmenter = Segmenter(sample_rate=SAMPLE_RATE)
    for region in segmenter.segment(io.BytesIO(pcm16(with_noise_floor(samples)))):
        decoder.start_utt()
        decoder.process_raw(region.pcm, full_utt=True)
        decoder.end_utt()
        for seg in decoder.seg() or ():
            word = seg.word.split("(", 1)[0]
            if word in FILLERS or word.startswith("["):
                continue
            words.append(word)
            times.append((region.start_time + seg.start_frame * FRAME_SECONDS,
                          region.start_time + (seg.end_frame + 1) * FRAME_SECONDS))
    return Recognition(words, np.array(times, dtype=np.float64).reshape(-1, 2), "pocketsphinx")


_PIPELINES: dict[str, Any] = {}
_PIPELINE_LOCK = threading.Lock()


def whisper_pipeline(model: str) -> Any:
    """transformers' speech-recognition pipeline for a Whisper checkpoint, loaded once."""
    from models import text_encoders as hf

    with _PIPELINE_LOCK:
        if model not in _PIPELINES:
            from transformers import pipeline

            try:
                _PIPELINES[model] = pipeline(
                    "automatic-speech-recognition", model=hf.resolve_encoder(model), device=-1
                )
            except OSError as err:
                raise ExtractError(
                    f"extract.text.asr_model {model!r}: no Whisper checkpoint there and nothing "
                    f"is downloaded at run time ({err}); give a local folder of a saved "
                    "checkpoint (save_pretrained) or a name already in the Hugging Face cache"
                ) from None
        return _PIPELINES[model]


def _recognize_whisper(samples: np.ndarray, model: str, language: str) -> Recognition:
    asr = whisper_pipeline(model)
    kwargs: dict[str, Any] = {"task": "transcribe"}
    if language and getattr(asr.model.generation_config, "is_multilingual", False):
        kwargs["language"] = language
    with _PIPELINE_LOCK:  # one pipeline, several extraction threads
        # Over 30 s Whisper's own long-form generation runs (sequential 30 s windows)
        out = asr({"raw": np.asarray(samples, np.float32), "sampling_rate": SAMPLE_RATE},
                  return_timestamps="word", generate_kwargs=kwargs)
    words, times = [], []
    duration = len(samples) / SAMPLE_RATE
    for chunk in out.get("chunks", []):
        word = chunk["text"].strip()
        start, end = chunk["timestamp"]
        if not word or start is None:
            continue
        end = min(duration, end if end is not None else duration)
        start = min(start, end)
        words.append(word)
        times.append((float(start), float(end)))
    return Recognition(words, np.array(times, dtype=np.float64).reshape(-1, 2), "whisper")


def recognize(samples: np.ndarray, engine: str, model: str = "", language: str = "en"
              ) -> Recognition:
    """Words and their times heard in 16 kHz mono ``samples`` by ``engine``."""
    if engine == "pocketsphinx":
        if language != "en":
            raise ExtractError(f"pocketsphinx recognises US English only, not {language!r}: "
                               "use extract.text.asr: whisper with a multilingual checkpoint")
        return _recognize_pocketsphinx(samples)
    if engine == "whisper":
        if not model:
            raise ExtractError("extract.text.asr: whisper needs extract.text.asr_model")
        return _recognize_whisper(samples, model, language)
    raise ExtractError(f"unknown speech recognition engine {engine!r}; expected one of {ENGINES}")
