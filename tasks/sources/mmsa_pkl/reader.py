"""Reading an MMSA pickle safely, and checking it against the published layout.

Unpickling can run arbitrary code: :func:`load_pickle` reads the named file with an
unpickler that only rebuilds numpy arrays and plain Python containers, unless
``dataset.pkl.trusted: true`` says the file is trusted. The checks name file, split and key.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tasks.contracts import POLARITY, SPLITS
from tasks.formats.mmsa import LENGTH_KEYS, META, META_FORMAT, SIMS_LABELS, TEXT_LENGTHS, strings
from tasks.sources.mmsa_pkl import VARIANT_ORDER, PickleFormatError, variant_by_name

BLOCK = 512  # samples converted and written at a time: bounds the float32 copies in memory

# Globals a numpy-only pickle needs (numpy 1.x and 2.x module names, protocols 2-5).
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("_codecs", "encode"),  # protocol-2 pickles of bytes / numpy buffers
}



class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays/scalars and builtin containers; refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only numpy arrays and builtin containers are "
            "allowed (set dataset.pkl.trusted: true only for a file you trust)"
        )



def load_pickle(path: Path, trusted: bool = False) -> dict[str, Any]:
    """Unpickle the named file (numpy-only unless ``trusted``) and check its top level."""
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh) if trusted else _NumpyUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as err:
        raise PickleFormatError(f"{path}: not a readable MMSA pickle: {err}") from None
    if not isinstance(data, dict):
        raise PickleFormatError(f"{path}: expected a dict at the top, got {type(data).__name__}")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise PickleFormatError(f"{path}: split(s) {missing} missing (keys: {sorted(data)})")
    for split in SPLITS:
        if not isinstance(data[split], dict):
            raise PickleFormatError(
                f"{path}: [{split!r}] should be a dict of arrays, got {type(data[split]).__name__}"
            )
    if META in data:
        _check_meta(path, data[META])
    return data


def _check_meta(path: Path, meta: Any) -> None:
    """An export's ``msaflow`` dict: the keys this reader uses, with their types."""
    want = {"format": int, "variant": str, "task": str, "class_names": list,
            "text_encoder": str, "feature_sets": dict}
    if not isinstance(meta, dict):
        raise PickleFormatError(f"{path}: [{META!r}] should be a dict, got {type(meta).__name__}")
    for key, kind in want.items():
        if not isinstance(meta.get(key), kind):
            raise PickleFormatError(
                f"{path}: [{META!r}][{key!r}] should be a {kind.__name__}, got "
                f"{meta.get(key)!r}"
            )
    if meta["format"] > META_FORMAT:
        raise PickleFormatError(
            f"{path}: [{META!r}] is format {meta['format']}, newer than this msaflow reads "
            f"({META_FORMAT}); upgrade msaflow"
        )
    if meta["variant"] not in VARIANT_ORDER:
        raise PickleFormatError(
            f"{path}: [{META!r}]['variant'] = {meta['variant']!r}, expected one of "
            f"{list(VARIANT_ORDER)}"
        )


def _where(path: Path, split: str, key: str) -> str:
    return f"{path}: [{split!r}][{key!r}]"


def _array(path: Path, split: str, part: dict[str, Any], key: str, ndim: int) -> np.ndarray:
    if key not in part:
        raise PickleFormatError(
            f"{path}: [{split!r}] has no key {key!r} (keys: {sorted(part)})"
        )
    arr = np.asarray(part[key])
    if ndim == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]  # MMSA stores some label vectors as (N, 1)
    if arr.ndim != ndim:
        raise PickleFormatError(
            f"{_where(path, split, key)}: expected {ndim} dimensions, got shape {arr.shape}"
        )
    return arr


def detect_variant(path: Path, data: dict[str, Any]) -> str:
    """'aligned' when text, audio and vision share one length, else 'unaligned'.

    The file name (``aligned_50.pkl`` / ``unaligned_50.pkl``) must agree when it says.
    """
    part = data["train"]
    lengths = {}
    for key, axis in (("text", 1), ("audio", 1), ("vision", 1)):
        arr = _array(path, "train", part, key, 3)
        lengths[key] = arr.shape[axis]
    by_shape = "aligned" if len(set(lengths.values())) == 1 else "unaligned"
    if META in data:  # an export says; an unaligned one may have equal lengths by chance
        said = data[META]["variant"]
        if said == "aligned" and by_shape != "aligned":
            raise PickleFormatError(
                f"{path}: [{META!r}] says 'aligned' but the sequence lengths {lengths} differ"
            )
        by_shape = said
    by_name = variant_by_name(path)
    if by_name is not None and by_name != by_shape:
        raise PickleFormatError(
            f"{path}: the file name says {by_name!r} but the sequence lengths {lengths} say "
            f"{by_shape!r}"
        )
    if by_shape == "unaligned":
        missing = [k for k in LENGTH_KEYS if k not in part]
        if missing:
            raise PickleFormatError(
                f"{path}: ['train'] has no key(s) {missing}: an unaligned pickle "
                f"(lengths {lengths}) needs the true audio/vision lengths"
            )
    return by_shape


def _check_split(path: Path, split: str, part: dict[str, Any], variant: str,
                 dims: dict[str, int] | None) -> dict[str, Any]:
    """Validate one split's arrays; return N, the per-stream lengths/dims and the labels."""
    ids = _array(path, split, part, "id", 1)
    n = len(ids)
    text = _array(path, split, part, "text", 3)
    tb = _array(path, split, part, "text_bert", 3)
    audio = _array(path, split, part, "audio", 3)
    vision = _array(path, split, part, "vision", 3)
    expect = {
        "raw_text": (n,),
        "text": (n, text.shape[1], text.shape[2]),
        "text_bert": (n, 3, tb.shape[2]),  # MMSA-FET pads the tokens to a length of their own
        "audio": (n, audio.shape[1], audio.shape[2]),
        "vision": (n, vision.shape[1], vision.shape[2]),
        "regression_labels": (n,),
    }
    if variant == "unaligned":
        expect.update(audio_lengths=(n,), vision_lengths=(n,))
    for key in (TEXT_LENGTHS, *LENGTH_KEYS):
        if key in part:
            expect[key] = (n,)
    if "classification_labels" in part:
        expect["classification_labels"] = (n,)
    if "annotations" in part:
        expect["annotations"] = (n,)
    for sims_key in SIMS_LABELS.values():
        if sims_key in part:
            expect[sims_key] = (n,)
    shapes = {}
    for key, shape in expect.items():
        arr = _array(path, split, part, key, len(shape))
        if arr.shape != shape:
            names = {"text_bert": "(N, 3, L)", "raw_text": "(N,)"}
            raise PickleFormatError(
                f"{_where(path, split, key)}: expected shape {shape} "
                f"{names.get(key, '')}, got {arr.shape}".replace("  ", " ")
            )
        shapes[key] = arr
    if variant == "aligned" and not (text.shape[1] == audio.shape[1] == vision.shape[1]):
        raise PickleFormatError(
            f"{path}: [{split!r}] sequence lengths text {text.shape[1]}, audio "
            f"{audio.shape[1]}, vision {vision.shape[1]} differ in an aligned pickle"
        )
    got_dims = {"words": text.shape[2], "audio": audio.shape[2], "vision": vision.shape[2]}
    if dims is not None and got_dims != dims:
        raise PickleFormatError(
            f"{path}: [{split!r}] feature sizes {got_dims} differ from train's {dims}"
        )
    seq = {"tokens": tb.shape[2], "words": text.shape[1], "audio": audio.shape[1],
           "vision": vision.shape[1]}
    ids_np = tb[:, 0]
    if not np.all(np.isfinite(ids_np)) or np.any(ids_np < 0) or np.any(ids_np != np.round(ids_np)):
        raise PickleFormatError(
            f"{_where(path, split, 'text_bert')}: row 0 must hold non-negative integer token ids"
        )
    return {"n": n, "dims": got_dims, "seq": seq}


def _labels(path: Path, split: str, part: dict[str, Any], task: str
            ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(regression label, class index, annotation) per clip, as the manifest holds them."""
    label = _array(path, split, part, "regression_labels", 1).astype(np.float32)
    n = len(label)
    anns = strings(_array(path, split, part, "annotations", 1)) if "annotations" in part \
        else [""] * n
    if task == "classification":
        if "classification_labels" not in part:
            raise PickleFormatError(
                f"{path}: [{split!r}] has no key 'classification_labels' "
                "(dataset.task: classification)"
            )
        raw = _array(path, split, part, "classification_labels", 1)
        if not np.all(np.isfinite(raw.astype(np.float64))) or np.any(raw != np.round(raw)):
            raise PickleFormatError(
                f"{_where(path, split, 'classification_labels')}: expected integer classes"
            )
        classes = raw.astype(np.int64)
        if np.any(classes < -1):
            raise PickleFormatError(
                f"{_where(path, split, 'classification_labels')}: class index below -1"
            )
        return label, classes, anns
    # Regression: the polarity class, from the annotation when it names one, else the sign.
    classes = np.full(n, -1, np.int64)
    for i in range(n):
        if anns[i] in POLARITY:
            classes[i] = POLARITY.index(anns[i])
        elif np.isfinite(label[i]):
            classes[i] = int(np.sign(label[i])) + 1
            anns[i] = POLARITY[classes[i]]
    return label, classes, anns


