"""Feature set ``text``: words with their times, token ids, frozen per-word embeddings.

Word times (``extract.text.timing``): ``forced`` aligns the transcript on the clip's speech
(tasks/speech/alignment.py: PocketSphinx, US English, offline); a clip whose alignment fails
falls back to ``spread`` for that clip, with the reason as a warning. ``spread`` shares the
clip's duration between its words in proportion to their length in characters (a longer word
takes longer to say). A clip without a transcript gets one from speech recognition when
``extract.text.asr`` names an engine (its words keep the recognised times), else it is an
error for the text modality. Tokens are spread evenly. Token ids are the tokenizer's full
sequence of the transcript (with [CLS]/[SEP], never truncated: the cache stage truncates to
``text.max_tokens``). A word's embedding is the mean of the encoder's last hidden states over
that word's subword tokens, found with the tokenizer's ``word_ids()`` on the word list.

Per clip the cache keeps ``counters`` (``COUNTERS``), which the extract stage sums into the
words ``.csd`` metadata and its summary: how many words were aligned, given an eSpeak
pronunciation, interpolated or spread, and how many clips fell back or were recognised.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.text_encoders import frozen_encoder, load_tokenizer
from tasks.contracts import ExtractError, MediaError
from tasks.features import Output, register
from tasks.features.media import ClipInput, decode_audio
from tasks.speech import SAMPLE_RATE
from tasks.speech.alignment import FRONT_END_VERSION, AlignmentFailed, align
from tasks.speech.recognition import Recognition, recognize
from tasks.speech.words import split_words, spread_by_length

COUNTERS: tuple[str, ...] = (
    "words", "aligned", "pronounced", "interpolated", "spread", "fallback", "recognized",
)

# Fast (Rust) tokenizers raise "Already borrowed" when two threads use one at once.
_TOKENIZER_LOCK = threading.Lock()


@dataclass(frozen=True)
class TextFeatures:
    """Everything the text modality writes for one clip."""

    words: list[str]
    word_intervals: np.ndarray  # (n_words, 2) seconds
    embeddings: np.ndarray  # (n_words, D) float32
    tokens: np.ndarray  # (n_tokens, 1) int64
    token_intervals: np.ndarray  # (n_tokens, 2) seconds





def _word_chunks(word_ids: list[int | None], n_words: int, limit: int) -> list[range]:
    """Split the words into runs whose subword tokens fit the encoder (usually one run)."""
    counts = np.bincount([w for w in word_ids if w is not None], minlength=n_words)
    chunks: list[range] = []
    begin, used = 0, 0
    for i, c in enumerate(counts):
        if used + c > limit and i > begin:
            chunks.append(range(begin, i))
            begin, used = i, 0
        used += c
    chunks.append(range(begin, n_words))
    return chunks


def word_embeddings(words: list[str], tokenizer: Any, encoder: Any) -> np.ndarray:
    """(n_words, D) float32: mean last hidden state over each word's subword tokens."""
    import torch

    limit = int(getattr(encoder.config, "max_position_embeddings", 512)) - 2
    with _TOKENIZER_LOCK:
        ids_all = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    word_ids_all = ids_all.word_ids()
    out = np.zeros((len(words), int(encoder.config.hidden_size)), np.float32)
    for chunk in _word_chunks(word_ids_all, len(words), limit):
        part = words[chunk.start : chunk.stop]
        with _TOKENIZER_LOCK:
            enc = tokenizer(part, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            ).last_hidden_state[0]  # (T, D)
        word_ids = enc.word_ids(0)
        index = torch.tensor([-1 if w is None else w for w in word_ids])
        for w in range(len(part)):
            mask = index == w
            if bool(mask.any()):  # a word the tokenizer drops entirely keeps a zero row
                out[chunk.start + w] = hidden[mask].mean(dim=0).numpy()
    return out


def extract_text(
    text: str, duration: float, tokenizer_name: str, encoder_name: str,
    word_intervals: np.ndarray | None = None,
) -> TextFeatures:
    """Words, their intervals (``word_intervals``, else spread over the clip), embeddings,
    and the token ids of one transcript."""
    if not isinstance(text, str) or not text.strip():
        raise ExtractError("empty transcript")
    words = split_words(text)
    if not words:
        raise ExtractError(f"no words in transcript {text[:60]!r}")
    if not duration > 0:
        raise ExtractError(f"clip duration {duration} s: cannot place words in time")
    tokenizer = load_tokenizer(tokenizer_name)
    encoder = frozen_encoder(encoder_name)
    # Embeddings need the encoder's own tokenizer (text.tokenizer may name another model).
    encoder_tokenizer = (
        tokenizer if encoder_name == tokenizer_name else load_tokenizer(encoder_name)
    )
    with _TOKENIZER_LOCK:
        token_ids = tokenizer(text.strip(), add_special_tokens=True)["input_ids"]
    tokens = np.asarray(token_ids, dtype=np.int64).reshape(-1, 1)
    embeddings = word_embeddings(words, encoder_tokenizer, encoder)
    if not np.isfinite(embeddings).all():
        raise ExtractError("word embeddings have NaN/Inf values")
    if word_intervals is None:
        word_intervals = spread_by_length([len(w) for w in words], duration)
    elif len(word_intervals) != len(words):
        raise ExtractError(f"{len(word_intervals)} word times for {len(words)} words")
    return TextFeatures(
        words=words,
        word_intervals=np.asarray(word_intervals, dtype=np.float64).reshape(-1, 2),
        embeddings=embeddings,
        tokens=tokens,
        token_intervals=spread_by_length(np.ones(len(tokens)), duration),
    )


def _words(npz: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return npz["words"].reshape(-1, 1), npz["word_intervals"]


def _embeddings(npz: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return npz["embeddings"], npz["word_intervals"]


def _tokens(npz: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return npz["tokens"].reshape(-1, 1), npz["token_intervals"]


def _recognized_words(heard: Recognition) -> tuple[list[str], np.ndarray]:
    """The recognised words as the transcript splitter splits them, each part sharing its
    word's interval by length (``don't`` stays one word; ``-`` alone disappears)."""
    words: list[str] = []
    times: list[np.ndarray] = []
    for word, (start, end) in zip(heard.words, heard.intervals, strict=True):
        parts = split_words(word)
        if parts:
            words += parts
            times.append(spread_by_length([len(p) for p in parts], end - start) + start)
    return words, (np.concatenate(times) if times else np.zeros((0, 2)))


def _timing_description(section: Any) -> str:
    if section.timing == "spread":
        return "transcript words; times spread over the clip by word length"
    return ("transcript words; times by forced alignment (PocketSphinx 5, US English model, "
            "eSpeak NG pronunciations for words outside its dictionary); a clip whose "
            "alignment failed is spread over its duration (extract_errors.csv)")


def _warm(section: Any) -> None:
    """The tokenizer and the frozen encoder (transformers' model code is seconds to import)."""
    load_tokenizer(section.tokenizer)
    load_tokenizer(section.encoder)
    frozen_encoder(section.encoder)


@register(
    "text",
    modality="text",
    # max_tokens only truncates, in the cache stage
    keys=("tokenizer", "encoder", "timing", "asr", "asr_model", "language"),
    description="transcript words, token ids and frozen word embeddings",
    dims=lambda section, width: [],
    uses_transcript=True,
    counters=COUNTERS,
    # the speech front end's behaviour: a change recomputes the words of every clip
    identity=lambda section: ({"speech_front_end": FRONT_END_VERSION}
                              if section.timing == "forced" or section.asr == "pocketsphinx"
                              else {}),
    outputs=(
        Output("words", _timing_description, lambda section, width: ["word"], _words),
        Output("word_embeddings",
               "frozen encoder last hidden state, mean over each word's subwords",
               lambda section, width: [f"{section.encoder}_{i}" for i in range(width)],
               _embeddings),
        Output("tokens",
               "tokenizer ids of the whole transcript incl. special tokens, not truncated",
               lambda section, width: ["token_id"], _tokens),
    ),
    warm=_warm,
)
def compute(clip: ClipInput, section: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """One clip's transcript (or what recognition heard) as words with times, their
    embeddings and its token ids; the counters of how the times were made."""
    counts = dict.fromkeys(COUNTERS, 0)
    warnings: list[str] = []
    text, source = clip.text, "transcript"
    intervals: np.ndarray | None = None
    if not text.strip() and section.asr != "none":
        samples = decode_audio(clip.media, SAMPLE_RATE, clip.start, clip.end)
        heard = recognize(samples, section.asr, section.asr_model, section.language)
        words, intervals = _recognized_words(heard)
        if not words:
            raise ExtractError(f"empty transcript, and asr:{heard.engine} heard no words")
        text, source = " ".join(words), f"asr:{heard.engine}"
        counts["recognized"] = 1
        warnings.append(f"no transcript given: speech recognition ({source}) heard "
                        f"{len(words)} words")
    elif text.strip() and section.timing == "forced":
        words = split_words(text)
        try:
            samples = decode_audio(clip.media, SAMPLE_RATE, clip.start, clip.end)
            aligned = align(samples, words)
        except (AlignmentFailed, MediaError) as err:
            counts.update(fallback=1, spread=len(words))
            warnings.append(f"{err}; its words are spread over the clip")
        else:
            intervals = aligned.intervals
            counts.update(aligned=aligned.aligned, pronounced=aligned.pronounced,
                          interpolated=aligned.interpolated)
    t = extract_text(text, clip.duration, section.tokenizer, section.encoder, intervals)
    counts["words"] = len(t.words)
    if section.timing == "spread" and source == "transcript":
        counts["spread"] = len(t.words)
    return {
        "words": np.array(t.words, dtype=str),
        "word_intervals": t.word_intervals,
        "embeddings": t.embeddings,
        "tokens": t.tokens,
        "token_intervals": t.token_intervals,
        "transcript": np.array(text, dtype=str),
        "transcript_source": np.array(source, dtype=str),
        "counters": np.array([counts[k] for k in COUNTERS], dtype=np.int64),
    }, warnings
