"""`predict`: one video's model input, as the cache stage reads a clip from the ``.csd``.

The extract stage's extractors (``extract_clip``, into a scratch per-clip cache), then the
cache stage's per-clip input (``load_clip``, ``prepare``); a modality the video lacks (no
audio stream, no face, no transcript) is fed absent, as the robustness stage's ``absent``
conditions feed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from config.schema import ExtractParams
from models.base import DataSpec
from models.text_encoders import load_tokenizer
from tasks import extract, features
from tasks.cache import Clip, load_clip
from tasks.features import MODALITIES
from tasks.features.facemesh import NO_FACE_WARNING
from tasks.predict.model import VideoError

SCRATCH_ID = "video"  # every video's id in the per-clip cache (keyed by content, not id)
NO_TRANSCRIPT = "no transcript: the text modality got an empty transcript"
NO_SPEECH = "no transcript, and speech recognition heard no words: the text modality is empty"


class _Entries:
    """The ``CsdReader.get`` interface over one clip's extracted arrays."""

    def __init__(self, features: np.ndarray, intervals: np.ndarray) -> None:
        self.entry = (features, intervals)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.entry


def _no_text(cfg: ExtractParams, words_dim: int) -> dict[str, _Entries]:
    """What an empty transcript gives: no words, the tokenizer's ids of "" ([CLS] [SEP])."""
    tokenizer = load_tokenizer(cfg.text.tokenizer)
    ids = np.asarray(tokenizer("", add_special_tokens=True)["input_ids"], np.int64)
    return {
        "words": _Entries(np.zeros((0, 1), dtype="S1"), np.zeros((0, 2))),
        "word_embeddings": _Entries(np.zeros((0, words_dim), np.float32), np.zeros((0, 2))),
        "tokens": _Entries(ids.reshape(-1, 1), np.zeros((len(ids), 2))),
    }


@dataclasses.dataclass
class Featurized:
    """One video's model input as the cache stage reads it from the .csd, and what it says."""

    clip: Clip
    notes: list[str]
    transcript: str | None  # what the text modality used (None: no transcript)
    source: str | None  # where it came from: given, asr:<engine>
    absent: list[str]  # modalities scored absent (robustness stage's "absent" conditions)


def _placeholder(dim: int) -> _Entries:
    """An absent audio / vision stream before `prepare`: one zero row covering any word, so
    the aligned variant keeps the words; :func:`drop_absent` then empties the stream."""
    return _Entries(np.zeros((1, dim), np.float32), np.array([[0.0, 1e9]]))


def _absent_modalities(
    result: dict[str, Any], has_text: bool, allow: bool, video: Path
) -> tuple[list[str], list[str]]:
    """Which modalities the video lacks (no stream, no face, no transcript) and the notes
    saying why; VideoError if it lacks them and ``allow`` is false, or lacks them all."""
    absent: dict[str, str] = {}
    for modality in ("audio", "vision"):
        if modality in result["missing"]:
            absent[modality] = next(e["error"] for e in result["errors"]
                                    if e["modality"] == modality and e["severity"] == "error")
    if "vision" not in absent and any(
        e["modality"] == "vision" and e["error"] == NO_FACE_WARNING for e in result["errors"]
    ):
        absent["vision"] = NO_FACE_WARNING
    if not has_text:
        absent["text"] = "no transcript"
    if absent and not allow:
        raise VideoError(
            f"{video}: " + "; ".join(f"{m}: {why}" for m, why in absent.items())
            + " (predict.allow_absent is false; set it true to score the video with "
            f"{' and '.join(absent)} absent)"
        )
    if len(absent) == len(MODALITIES):
        raise VideoError(f"{video}: no modality to score (" + "; ".join(
            f"{m}: {why}" for m, why in absent.items()) + ")")
    notes = [f"{m} absent: {why}; scored without it" for m, why in absent.items()
             if m != "text"]
    return [m for m in MODALITIES if m in absent], notes


def featurize(
    video: Path, text: str | None, cfg: ExtractParams, cache_dir: Path, spec: DataSpec,
    allow_absent: bool = True,
) -> Featurized:
    """One video's features as the cache stage reads them from the .csd, its notes, the
    transcript the text modality used with where it came from (``asr:<engine>`` when
    ``extract.text.asr`` recognised it), and the modalities it lacks (``allow_absent``: scored
    absent; else a VideoError)."""
    if not video.is_file():
        raise VideoError(f"{video}: video file not found")
    # Its id in the scratch files: the video's file name may be anything (a "..mp4", a
    # space), and an id must be one that HDF5 groups and file names all take.
    row = {"clip_id": SCRATCH_ID, "media": str(video), "start": None, "end": None,
           "text": text or ""}
    # A failed modality is reported per video here, never raised by the extractor.
    result = extract.extract_clip(row, cfg.model_copy(update={"fail_fast": False}), cache_dir)
    failed = [
        f"{e['modality']}: {e['error']}"
        for e in result["errors"]
        if e["severity"] == "error" and (text or e["modality"] != "text")
        and e["modality"] not in result["missing"]
    ]
    if failed:
        raise VideoError("; ".join(failed))
    said, source = text, "given" if text else None
    if not text and result["status"].get("text") in ("cached", "computed"):  # recognised
        path = extract.cache_path(cache_dir, "text", result["keys"]["text"])
        with np.load(path, allow_pickle=False) as npz:
            said, source = str(npz["transcript"]), str(npz["transcript_source"])
    absent, notes = _absent_modalities(result, bool(said), allow_absent, video)
    notes += [f"{e['modality']}: {e['error']}" for e in result["errors"]
              if e["severity"] == "warning" and e["error"] != NO_FACE_WARNING]
    made = extract.outputs(cfg)  # .csd stem → (modality, output)
    wanted = {name: (made[name][0], made[name][1]) for name in ("words", "word_embeddings",
                                                                 "tokens")}
    for modality in ("audio", "vision"):
        chosen = features.chosen(cfg, modality).outputs[0]
        wanted[modality] = (modality, chosen)
    readers: dict[str, Any] = {}
    files: dict[str, Path] = {}
    if not said:
        readers.update(_no_text(cfg, spec.dims["words"]))
        files.update({k: Path("<empty transcript>") for k in readers})
        notes.insert(0, NO_TRANSCRIPT if cfg.text.asr == "none" else NO_SPEECH)
    for modality in ("audio", "vision"):
        if modality in absent:
            readers[modality] = _placeholder(spec.dims[modality])
            files[modality] = Path(f"<{modality} absent>")
    for name, (modality, output) in wanted.items():
        if name in readers:
            continue
        npz_path = extract.cache_path(cache_dir, modality, result["keys"][modality])
        with np.load(npz_path, allow_pickle=False) as npz:
            readers[name] = _Entries(*output.read(npz))
        files[name] = npz_path
    try:
        clip = load_clip(readers, files, SCRATCH_ID)
    except ValueError as err:
        raise VideoError(str(err)) from None
    got = {"words": clip.words.shape[1], "audio": clip.audio[1].shape[1],
           "vision": clip.vision[1].shape[1]}
    if got != {k: spec.dims[k] for k in got}:
        raise VideoError(f"{video}: feature sizes {got} differ from the model's {spec.dims}")
    return Featurized(clip, notes, said, source if said else None, absent)


def drop_absent(rows: dict[str, np.ndarray], absent: Sequence[str]) -> dict[str, np.ndarray]:
    """``prepare``'s rows with each absent audio / vision stream emptied: zero rows, so the
    writer pads it with zeros and the loader masks every position (the robustness stage's
    absent condition). An absent text already has no word and only [CLS] [SEP]."""
    out = dict(rows)
    for m in ("audio", "vision"):
        if m in absent:
            out[m] = rows[m][:0]
    return out

