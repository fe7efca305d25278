"""Speech, offline: what the demo says (eSpeak NG synthesis), when each word of a
transcript is said (forced alignment) and what a clip says (recognition).

``espeak`` drives eSpeak NG (speech and English pronunciations); ``alignment`` times a
transcript's words on 16 kHz speech with PocketSphinx; ``recognition`` transcribes it
(PocketSphinx or a local Whisper checkpoint); ``words`` splits a transcript into words. The
text feature set (tasks/features/text.py) and the demo corpus use them; none of it is a
feature set.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000  # what alignment and recognition read (16 kHz mono)


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
