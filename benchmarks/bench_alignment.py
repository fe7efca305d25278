"""Word timing on the demo corpus: forced alignment against the spread it replaces, measured
against eSpeak NG's own word times; alignment speed on one core; speech recognition WER.

    python benchmarks/bench_alignment.py [--clips 240] [--corpus data/raw/demo]

The demo generator records where eSpeak NG voiced each word (``demo_truth.csv``, column
``words``; a few function words eSpeak merges into their neighbour have no time of their own
and are left out). For every clip it times the transcript's words with ``forced`` (the
extract stage's aligner) and with ``spread`` (duration shared by word length, the previous
method), and prints the mean and 90th-percentile absolute boundary error (starts and ends)
of both and their ratio; the same alignment without the noise floor (how many clips fail);
the aligner's speed in seconds of audio per wall second with one torch/BLAS thread (the
decoder is single-threaded); and the word error rate of PocketSphinx recognition on the
clips. Without ``--corpus`` (or when it holds no word times) a corpus is generated in a
temporary folder with the repo's params (about 30 s).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _corpus(root: Path | None, tmp: Path) -> Path:
    if root is not None and (root / "demo_truth.csv").is_file():
        with open(root / "demo_truth.csv", encoding="utf-8") as fh:
            if "words" in (csv.DictReader(fh).fieldnames or []):
                return root
        print(f"{root}: demo_truth.csv has no word times (an older corpus): generating one")
    from tasks.demo import corpus
    from tasks.params import load_params

    params = load_params(ROOT / "params.yaml")
    out = tmp / "demo"
    corpus.generate(params.demo, out, seed=params.seed, progress=False)
    return out


def _wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edit distance, reference length) over words."""
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[-1], len(ref)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=240)
    parser.add_argument("--corpus", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from tasks.features.media import decode_audio
    from tasks.speech import alignment as speech
    from tasks.speech.recognition import recognize
    from tasks.speech.words import split_words, spread_by_length

    with tempfile.TemporaryDirectory(prefix="bench-alignment-") as tmp:
        root = _corpus(args.corpus, Path(tmp))
        with open(root / "label.csv", encoding="utf-8") as fh:
            texts = {(r["video_id"], r["clip_id"]): r["text"] for r in csv.DictReader(fh)}
        with open(root / "demo_truth.csv", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[: args.clips]
        clips = []
        for r in rows:
            samples = decode_audio(root / "Raw" / r["video_id"] / f"{r['clip_id']}.mp4",
                                   speech.SAMPLE_RATE)
            clips.append((split_words(texts[(r["video_id"], r["clip_id"])]), samples,
                          json.loads(r["words"])))
        audio = sum(len(s) for _, s, _ in clips) / speech.SAMPLE_RATE

        speech.align(clips[0][1], clips[0][0])  # load the decoder before timing
        forced, spread, failed, untimed = [], [], 0, 0
        start = time.process_time()
        for words, samples, truth in clips:
            try:
                result = speech.align(samples, words).intervals
            except speech.AlignmentFailed:
                failed += 1
                continue
            guess = spread_by_length([len(w) for w in words], len(samples) / speech.SAMPLE_RATE)
            for (_, s, e), (fs, fe), (gs, ge) in zip(truth, result, guess, strict=True):
                if math.isnan(s):
                    untimed += 1
                    continue
                forced += [abs(s - fs), abs(e - fe)]
                spread += [abs(s - gs), abs(e - ge)]
        cpu = time.process_time() - start

        floor, speech.NOISE_FLOOR_DB = speech.NOISE_FLOOR_DB, None  # the audio as decoded
        speech._LOCAL.__dict__.clear()  # a fresh decoder, as the first clip of a run gets
        bare_failed = 0
        for words, samples, _ in clips:
            try:
                speech.align(samples, words)
            except speech.AlignmentFailed:
                bare_failed += 1
        speech.NOISE_FLOOR_DB = floor
        speech._LOCAL.__dict__.clear()

        errors, total = 0, 0
        asr_start = time.process_time()
        for words, samples, _ in clips:
            heard = recognize(samples, "pocketsphinx").words
            e, n = _wer([w.lower() for w in words], heard)
            errors, total = errors + e, total + n
        asr_cpu = time.process_time() - asr_start

    f, s = np.array(forced) * 1000, np.array(spread) * 1000
    print(f"demo corpus: {len(clips)} clips, {audio:.1f} s of speech, "
          f"{len(f) // 2} word boundaries with eSpeak times ({untimed} words eSpeak merged)")
    print()
    print("| word timing | mean abs error (ms) | 90th pct (ms) | clips failed |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| spread (by word length) | {s.mean():.1f} | {np.percentile(s, 90):.1f} | 0 |")
    print(f"| forced (PocketSphinx) | {f.mean():.1f} | {np.percentile(f, 90):.1f} | {failed} |")
    print(f"| forced, no noise floor | | | {bare_failed} |")
    print()
    print(f"forced / spread: mean error ratio {f.mean() / s.mean():.3f}, "
          f"90th percentile ratio {np.percentile(f, 90) / np.percentile(s, 90):.3f} "
          "(goal: at most 1/3)")
    print(f"alignment speed: {audio / cpu:.1f}x real time on one core "
          f"({cpu:.1f} s CPU for {audio:.1f} s of audio; goal: at least 20x)")
    print(f"speech recognition (pocketsphinx, US English LM): WER {errors / total:.3f} over "
          f"{total} words, {audio / asr_cpu:.1f}x real time on one core")


if __name__ == "__main__":
    main()
