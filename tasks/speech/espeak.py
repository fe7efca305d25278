"""eSpeak NG through ctypes (the library ``espeakng-loader`` ships): speech with its word
events, and pronunciations of words in eSpeak's phoneme mnemonics mapped to ARPAbet.

Two users: the demo corpus speaks its sentences and records where each word starts and ends
(the ground truth the forced aligner is measured against), and the forced aligner asks for a
pronunciation of a word the CMU dictionary lacks (a name, a number, an accented loan word).

The engine is process-wide C state, so every call holds one lock. Word times come from the
synthesis callback's events: a word starts at its ``espeakEVENT_WORD`` and ends where the next
word starts or a pause phoneme (``_``) begins, whichever comes first (phoneme events are on).
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / event and flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 0, 1, 5, 7
_PHONEME_SEPARATOR = "|"


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h); ``id`` is the union (a phoneme name for phoneme events)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),  # characters of the word (word events)
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class WordEvent:
    """A word eSpeak spoke: its characters in the text and its time in the audio."""

    text_start: int  # 0-based character offset in the synthesised text
    text_end: int  # exclusive
    start: float  # seconds from the start of the samples
    end: float


class ESpeak:
    """The process-wide eSpeak NG engine (one per process: the library keeps global state)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                              ctypes.c_int]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data,
                                                 _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data.decode()}")
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        # Keep a reference: the C side only holds a raw pointer to the callback.
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _collect(self, wav: ctypes.Array, n: int, events: ctypes.Array) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            name = e.id.decode("utf-8", "replace") if e.type == _EVENT_PHONEME else ""
            self._events.append((e.type, e.text_position, e.length, e.audio_position, name))
            i += 1
        return 0  # 0 = continue synthesis

    def _set_voice(self, voice: str) -> None:
        if self._voice != voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
            self._voice = voice

    def speak(
        self, text: str, voice: str, rate: int, pitch: int, range_: int, volume: int
    ) -> tuple[np.ndarray, list[WordEvent]]:
        """16-bit samples of ``text`` at ``self.sample_rate`` and the time of every word."""
        with self.lock:
            self._set_voice(voice)
            for key, value in ((RATE, rate), (PITCH, pitch), (RANGE, range_), (VOLUME, volume)):
                self.lib.espeak_SetParameter(key, int(value), 0)
            self._chunks, self._events = [], []
            raw = text.encode("utf-8")
            err = self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                        None, None)
            self.lib.espeak_Synchronize()
            if err != 0 or not self._chunks:
                raise RuntimeError(f"eSpeak NG could not speak {text!r} (error {err})")
            pcm = np.concatenate(self._chunks)
            events = list(self._events)
        return pcm, _word_events(events, len(pcm) / self.sample_rate)

    def phonemes(self, word: str, voice: str = "en-us") -> list[list[str]]:
        """eSpeak's phoneme mnemonics of ``word``, one list per word eSpeak reads in it
        (``42`` reads as two), stress marks kept."""
        with self.lock:
            self._set_voice(voice)
            text = ctypes.c_char_p(word.encode("utf-8"))
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(text), _CHARS_UTF8,
                                                 ord(_PHONEME_SEPARATOR) << 8)
        if not out:
            return []
        return [w.split(_PHONEME_SEPARATOR) for w in out.decode("utf-8").split() if w]


def _word_events(
    events: list[tuple[int, int, int, int, str]], total: float
) -> list[WordEvent]:
    """Word spans from the event stream (see the module docstring)."""
    words: list[list[float]] = []
    for kind, position, length, audio_ms, name in events:
        t = audio_ms / 1000.0
        if kind == _EVENT_WORD:
            if words and words[-1][3] is None:
                words[-1][3] = t
            words.append([position - 1, position - 1 + length, t, None])
        elif words and words[-1][3] is None and (
            kind == _EVENT_END or (kind == _EVENT_PHONEME and name.startswith("_"))
        ):
            words[-1][3] = t  # a pause or the clause end closes the word
    return [WordEvent(int(a), int(b), float(s), float(total if e is None else e))
            for a, b, s, e in words]


@lru_cache(maxsize=1)
def engine() -> ESpeak:
    """The process's eSpeak NG engine."""
    return ESpeak()


# eSpeak NG English phoneme mnemonics → CMU/ARPAbet phones (stress marks stripped first).
# Consonants, then vowels; r-coloured vowels expand to vowel + R as the CMU dictionary has.
_TO_ARPABET: dict[str, tuple[str, ...]] = {
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",),
    "f": ("F",), "v": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",),
    "S": ("SH",), "Z": ("ZH",), "h": ("HH",), "tS": ("CH",), "dZ": ("JH",), "m": ("M",),
    "n": ("N",), "N": ("NG",), "l": ("L",), "r": ("R",), "w": ("W",), "j": ("Y",),
    "t#": ("T",), "d#": ("D",), "x": ("K",), "l/": ("L",), "r-": ("R",), "z#": ("Z",),
    "n-": ("N",), "m-": ("M",), "?": ("T",), "@L": ("AH", "L"), "W": ("W",), "C": ("HH",),
    "a": ("AE",), "a#": ("AH",), "aa": ("AE",), "A:": ("AA",), "A": ("AA",),
    "A@": ("AA", "R"), "0": ("AA",), "O:": ("AO",), "O": ("AO",), "O@": ("AO", "R"),
    "o@": ("AO", "R"), "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@-": ("AH",),
    "3": ("ER",), "3:": ("ER",), "E": ("EH",), "e": ("EH",), "e@": ("EH", "R"),
    "eI": ("EY",), "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "i": ("IY",), "i:": ("IY",),
    "i@": ("IY", "R"), "i@3": ("IY", "R"), "U": ("UH",), "u:": ("UW",), "u": ("UW",),
    "U@": ("UH", "R"), "V": ("AH",), "aI": ("AY",), "aI@": ("AY", "ER"), "aI3": ("AY", "ER"),
    "aU": ("AW",), "aU@": ("AW", "ER"), "OI": ("OY",), "oU": ("OW",), "o": ("OW",),
    "@U": ("OW",), "IR": ("IH", "R"), "VR": ("ER",), "y": ("UW",), "Y": ("UW",),
}
_STRESS = re.compile(r"^[',%=]+")


def to_arpabet(mnemonics: list[str]) -> list[str] | None:
    """ARPAbet phones of eSpeak English mnemonics; None if one has no mapping."""
    phones: list[str] = []
    for raw in mnemonics:
        m = _STRESS.sub("", raw)
        if not m or m.startswith("_"):
            continue  # a pause
        mapped = _TO_ARPABET.get(m) or _TO_ARPABET.get(m.rstrip("#-:0123456789"))
        if mapped is None:
            return None
        phones.extend(mapped)
    return phones or None


def latin(word: str) -> bool:
    """True when every letter of ``word`` is Latin script (accents allowed), so an English
    pronunciation of it means something; digits and symbols count as Latin."""
    for ch in word:
        if ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN"):
            return False
    return True


def pronunciation(word: str) -> list[str] | None:
    """An ARPAbet pronunciation of ``word`` from eSpeak NG's US English rules, or None when
    there is none that means anything (a non-Latin script, an unmapped phoneme)."""
    if not latin(word):
        return None
    readings = engine().phonemes(word)
    phones: list[str] = []
    for reading in readings:
        mapped = to_arpabet(reading)
        if mapped is None:
            return None
        phones.extend(mapped)
    return phones or None
