"""Real speech: forced alignment against eSpeak NG's own word times, pronunciations of words
outside the dictionary, the recorded fallback, long audio, and offline recognition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest

from config.errors import ParamsError
from tasks import extract
from tasks.demo.speech import VOICES, make_audio
from tasks.features.text import COUNTERS
from tasks.params import load_params
from tasks.speech import alignment as speech
from tasks.speech.recognition import recognize
from tasks.speech.words import split_words, spread_by_length

ROOT = Path(__file__).resolve().parents[3]
SENTENCES = [
    "Honestly, the acting in this film was really wonderful.",
    "I thought the soundtrack was dull and the ending was weak.",
    "The story takes place in a small coastal town.",
    "My friends and I found the special effects impressive.",
]


def say(text: str, voice: int = 0, view: float = 0.0) -> tuple[np.ndarray, list]:
    """``text`` spoken by a demo voice: 16 kHz samples and eSpeak's time of each word."""
    return make_audio(text, view, VOICES[voice])


@pytest.fixture(scope="module")
def spoken() -> list[tuple[str, np.ndarray, list]]:
    return [(t, *say(t, voice=i % len(VOICES), view=(i - 1.5) / 2))
            for i, t in enumerate(SENTENCES)]


def boundary_errors(truth: list, intervals: np.ndarray) -> np.ndarray:
    """|start - true start| and |end - true end| of every word eSpeak timed (seconds)."""
    errors = [abs(a - b) for (_, s, e), (s2, e2) in zip(truth, intervals, strict=True)
              for a, b in ((s, s2), (e, e2)) if not math.isnan(s)]
    return np.array(errors)


def write_audio(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    """A PCM WAV file at ``rate`` with ``channels`` copies of ``samples`` (16 kHz input)."""
    from scipy.signal import resample_poly

    g = math.gcd(rate, speech.SAMPLE_RATE)
    y = resample_poly(samples, rate // g, speech.SAMPLE_RATE // g).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), mode="w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(np.tile(y, (channels, 1))), format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_forced_alignment_matches_espeak_word_times(spoken) -> None:
    forced, spread = [], []
    for text, samples, truth in spoken:
        words = split_words(text)
        assert [w for w, _, _ in truth] == words
        result = speech.align(samples, words)
        assert result.aligned == len(words) and result.interpolated == 0
        assert result.score > speech.MIN_SCORE
        forced.append(boundary_errors(truth, result.intervals))
        spread.append(boundary_errors(
            truth, spread_by_length([len(w) for w in words], len(samples) / 16000)))
    forced_err, spread_err = np.concatenate(forced), np.concatenate(spread)
    # Measured: mean ~17 ms, 90th percentile ~32 ms (benchmarks/bench_alignment.py).
    assert forced_err.mean() < 0.05 and np.percentile(forced_err, 90) < 0.1
    assert forced_err.mean() < spread_err.mean() / 3


def test_a_clips_word_times_do_not_depend_on_the_clips_before_it(spoken) -> None:
    """One decoder per thread serves many clips, in the order the workers happen to take
    them: each clip must get the times it would get first (byte-identical .csd files)."""
    speech._LOCAL.aligner = None  # a fresh decoder, as a new worker thread has
    first = {text: speech.align(samples, split_words(text)) for text, samples, _ in spoken}
    for text, samples, _ in reversed(spoken):  # other orders, one decoder
        again = speech.align(samples, split_words(text))
        np.testing.assert_array_equal(again.intervals, first[text].intervals)
        assert again.score == first[text].score


def test_words_outside_the_dictionary_are_timed() -> None:
    text = "My friend Zhangwei paid 42 euros at the café in Köln, 中文 today."
    samples, truth = say(text)
    words = split_words(text)
    result = speech.align(samples, words)
    # Zhangwei, 42, café, Köln get eSpeak pronunciations; the Chinese word has none in
    # English and is timed between its neighbours: nothing is dropped.
    assert result.pronounced >= 3 and result.interpolated == 1
    assert len(result.intervals) == len(words)
    assert np.all(np.diff(result.intervals[:, 0]) >= 0)
    assert np.all(result.intervals[:, 1] > result.intervals[:, 0])
    k = words.index("中文")
    assert result.intervals[k - 1, 1] <= result.intervals[k, 0] + 1e-9
    assert result.intervals[k, 1] <= result.intervals[k + 1, 0] + 1e-9
    timed = [i for i, w in enumerate(words) if w != "中文"]
    err = boundary_errors([truth[i] for i in timed], result.intervals[timed])
    assert np.median(err) < 0.05


@pytest.mark.parametrize("audio", ["silence", "noise", "other speech"])
def test_alignment_fails_on_audio_without_the_transcript(audio: str, spoken) -> None:
    words = split_words(SENTENCES[0])
    samples = {
        "silence": np.zeros(3 * 16000, np.float32),
        "noise": np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32),
        "other speech": spoken[2][1],
    }[audio]
    with pytest.raises(speech.AlignmentFailed, match="did not reach the end"):
        speech.align(samples, words)


def test_long_audio_is_aligned_window_by_window(spoken, monkeypatch) -> None:
    # Windows of 6 s on 20 s of speech: the long-file path, bounded by one window.
    monkeypatch.setattr(speech, "LONG_AUDIO", 8.0)
    monkeypatch.setattr(speech, "WINDOW", 6.0)
    monkeypatch.setattr(speech, "_ATTEMPTS", ((6.0, 1.6), (9.0, 1.6), (12.0, 2.0)))
    samples, words, truth, offset = [], [], [], 0.0
    for text, y, t in spoken * 2:
        samples.append(y)
        words += split_words(text)
        truth += [(w, s + offset, e + offset) for w, s, e in t]
        offset += len(y) / 16000
    y = np.concatenate(samples)
    assert len(y) / 16000 > 2 * speech.LONG_AUDIO
    result = speech.align(y, words)
    assert result.aligned == len(words)
    err = boundary_errors(truth, result.intervals)
    assert err.mean() < 0.05 and np.percentile(err, 90) < 0.1


def test_pocketsphinx_recognises_most_words(spoken) -> None:
    heard, said = [], []
    for text, samples, _ in spoken:
        result = recognize(samples, "pocketsphinx")
        assert result.engine == "pocketsphinx" and len(result.intervals) == len(result.words)
        assert np.all(result.intervals[:, 1] >= result.intervals[:, 0])
        heard += result.words
        said += [w.lower() for w in split_words(text)]
    recall = sum(min(heard.count(w), said.count(w)) for w in set(said)) / len(said)
    assert recall >= 0.6, (heard, said)


# --------------------------------------------------------------------------- extract stage


def _clip_row(path: Path, text: str) -> dict:
    return {"clip_id": path.stem, "media": str(path), "start": "", "end": "", "text": text}


def _text_arrays(result: dict, cache: Path) -> dict:
    with np.load(extract.cache_path(cache, "text", result["keys"]["text"])) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (48000, 2), (16000, 1)])
def test_text_of_a_clip_is_forced_aligned_at_any_rate(spoken, tmp_path, rate, channels) -> None:
    text, samples, truth = spoken[1]
    path = write_audio(tmp_path / f"c{rate}.wav", samples, rate, channels)
    params = load_params(ROOT / "params.yaml")
    result = extract.extract_clip(_clip_row(path, text), params.extract, tmp_path / "cache")
    assert result["status"]["text"] == "computed"
    arrays = _text_arrays(result, tmp_path / "cache")
    counts = dict(zip(COUNTERS, arrays["counters"].tolist(), strict=True))
    words = split_words(text)
    assert counts["words"] == len(words) and counts["fallback"] == 0
    assert counts["aligned"] == len(words)
    assert boundary_errors(truth, arrays["word_intervals"]).mean() < 0.06


def test_a_failed_alignment_falls_back_to_spread_and_says_why(spoken, tmp_path) -> None:
    _, samples, _ = spoken[0]
    path = write_audio(tmp_path / "c.wav", samples, 16000)
    other = SENTENCES[2]
    params = load_params(ROOT / "params.yaml")
    result = extract.extract_clip(_clip_row(path, other), params.extract, tmp_path / "cache")
    assert result["status"]["text"] == "computed"  # a warning, not a failure
    (warning,) = [e for e in result["errors"] if e["modality"] == "text"]
    assert warning["severity"] == "warning"
    assert "did not reach the end of the transcript" in warning["error"]
    assert "spread over the clip" in warning["error"]
    arrays = _text_arrays(result, tmp_path / "cache")
    counts = dict(zip(COUNTERS, arrays["counters"].tolist(), strict=True))
    assert counts["fallback"] == 1 and counts["spread"] == len(split_words(other))
    expected = spread_by_length([len(w) for w in split_words(other)], len(samples) / 16000)
    np.testing.assert_allclose(arrays["word_intervals"], expected, atol=1e-3)


def test_spread_timing_when_asked(spoken, tmp_path) -> None:
    text, samples, _ = spoken[0]
    path = write_audio(tmp_path / "c.wav", samples, 16000)
    params = load_params(ROOT / "params.yaml", {"extract.text.timing": "spread"})
    result = extract.extract_clip(_clip_row(path, text), params.extract, tmp_path / "cache")
    arrays = _text_arrays(result, tmp_path / "cache")
    assert dict(zip(COUNTERS, arrays["counters"].tolist(), strict=True))["spread"] == 9
    assert not [e for e in result["errors"] if e["modality"] == "text"]


def test_language_decides_what_may_run() -> None:
    with pytest.raises(ParamsError, match=r"extract\.text\.timing: forced aligns with"):
        load_params(ROOT / "params.yaml", {"extract.text.language": "zh"})
    sims = load_params(ROOT / "params.yaml", {"dataset.name": "sims"})
    assert (sims.extract.text.timing, sims.extract.text.language) == ("spread", "zh")
    with pytest.raises(ParamsError, match=r"extract\.text\.asr: pocketsphinx recognises"):
        load_params(ROOT / "params.yaml", {"dataset.name": "sims",
                                           "extract.text.asr": "pocketsphinx"})
    with pytest.raises(ParamsError, match=r"extract\.text\.asr: whisper needs"):
        load_params(ROOT / "params.yaml", {"extract.text.asr": "whisper"})


# --------------------------------------------------------------------------- whisper

WORDS = ("Ġthe", "Ġmovie", "Ġwas", "Ġgood", "Ġfun")


def make_tiny_whisper(folder: Path) -> Path:
    """A randomly initialised, tiny Whisper saved like a real checkpoint: a byte-level BPE
    vocabulary of five words plus Whisper's special and timestamp tokens, a 1+2 layer model
    whose generation may only say those words (so it says some), and alignment heads for
    word timestamps. It tests loading and the word-timestamp plumbing, not accuracy."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        parts = list(word)
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = [pair[0] + pair[1], *parts[2:]]
    specials = ["<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
                *(f"<|{i * 0.02:.2f}|>" for i in range(1501))]
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    ids = tok.convert_tokens_to_ids
    config = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
        decoder_start_token_id=ids("<|startoftranscript|>"), eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    gen = GenerationConfig.from_model_config(config)
    gen._from_model_config = False  # keep these settings when loaded
    timestamps = {ids(t) for t in specials if t[2].isdigit()}
    allowed = {ids(w) for w in WORDS} | {tok.eos_token_id} | timestamps
    settings = dict(
        no_timestamps_token_id=ids("<|notimestamps|>"), is_multilingual=True,
        lang_to_id={"<|en|>": ids("<|en|>"), "<|zh|>": ids("<|zh|>")},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        alignment_heads=[[1, 0], [1, 1]], max_length=12,
        suppress_tokens=[i for i in range(len(tok)) if i not in allowed],
        begin_suppress_tokens=[tok.eos_token_id],
    )
    for key, value in settings.items():  # Whisper's own keys: update() ignores unknown ones
        setattr(gen, key, value)
    model.generation_config = gen
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def test_whisper_path_end_to_end(spoken, tmp_path) -> None:
    checkpoint = make_tiny_whisper(tmp_path / "tiny-whisper")
    _, samples, _ = spoken[0]
    path = write_audio(tmp_path / "c.wav", samples, 16000)
    params = load_params(ROOT / "params.yaml", {"extract.text.asr": "whisper",
                                                "extract.text.asr_model": str(checkpoint)})
    result = extract.extract_clip(_clip_row(path, ""), params.extract, tmp_path / "cache")
    assert result["status"]["text"] == "computed"
    (note,) = [e["error"] for e in result["errors"] if e["modality"] == "text"]
    assert note.startswith("no transcript given: speech recognition (asr:whisper) heard ")
    arrays = _text_arrays(result, tmp_path / "cache")
    assert str(arrays["transcript_source"]) == "asr:whisper"
    words = arrays["words"].tolist()
    assert words and set(words) <= {w.lstrip("Ġ") for w in WORDS}
    assert str(arrays["transcript"]) == " ".join(words)
    iv = arrays["word_intervals"]
    assert np.all(iv[:, 1] >= iv[:, 0]) and iv.max() <= len(samples) / 16000 + 1e-6
    counts = dict(zip(COUNTERS, arrays["counters"].tolist(), strict=True))
    assert counts["recognized"] == 1 and counts["words"] == len(words)


def test_a_missing_whisper_checkpoint_is_a_clear_clip_error(tmp_path, spoken) -> None:
    _, samples, _ = spoken[0]
    path = write_audio(tmp_path / "c.wav", samples, 16000)
    params = load_params(ROOT / "params.yaml", {"extract.text.asr": "whisper",
                                                "extract.text.asr_model": str(tmp_path / "no")})
    result = extract.extract_clip(_clip_row(path, ""), params.extract, tmp_path / "cache")
    (error,) = [e for e in result["errors"] if e["modality"] == "text"]
    assert error["severity"] == "error" and "nothing is downloaded" in error["error"]


def test_the_stage_records_method_and_counts(spoken, tmp_path) -> None:
    import pandas as pd

    from config.paths import Paths
    from tasks.contracts import write_manifest
    from tasks.formats.csd import read_csd

    params = load_params(ROOT / "params.yaml", {"extract.workers": 1})
    paths = Paths.from_params(params, base=tmp_path)
    rows = []
    for i, (text, samples, _) in enumerate(spoken[:2]):
        path = write_audio(tmp_path / f"c{i}.wav", samples, 16000)
        rows.append({"clip_id": f"v$_${i}", "video_id": "v", "split": "train",
                     "media": str(path), "start": "", "end": "",
                     "text": text if i == 0 else SENTENCES[3], "label": 1.0,
                     "label_class": 2, "annotation": "Positive"})
    paths.interim.mkdir(parents=True)
    write_manifest(paths.manifest, pd.DataFrame(rows))
    # vision of a .wav fails; the text and audio modalities are what this test reads
    summary = extract.extract_media(params.model_copy(update={"extract": params.extract.model_copy(
        update={"max_failed_fraction": 1.0})}), paths)
    assert summary["text_words"] == len(split_words(SENTENCES[0])) + len(split_words(
        SENTENCES[3]))
    assert summary["text_fallback"] == 1
    assert summary["text_aligned"] == len(split_words(SENTENCES[0]))
    with read_csd(paths.csd_dir / "words.csd") as csd:
        meta = csd.metadata
    assert meta["extractor counts"]["fallback"] == 1
    assert meta["extractor params"]["text"]["timing"] == "forced"
    assert "forced alignment" in meta["computational sequence description"]
    report = pd.read_csv(paths.extract_errors)
    text_rows = report[report["modality"] == "text"]
    assert text_rows["clip_id"].tolist() == ["v$_$1"]
    assert text_rows["severity"].tolist() == ["warning"]
    assert json.dumps(meta["extractor counts"])  # plain ints
