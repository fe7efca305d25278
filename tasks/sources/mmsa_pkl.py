"""Source ``mmsa_pkl``: MMSA's processed pickles → manifest and HDF5 cache (no extraction).

An MMSA pickle (``mosi/unaligned_50.pkl``, ``mosei/aligned_50.pkl``, ``sims/unaligned_39.pkl``
…) is a dict with ``train``/``valid``/``test``, each holding per-clip arrays: ``id``,
``raw_text``, ``text`` (N, L, 768 BERT features), ``text_bert`` (N, 3, L: token ids, attention
mask, segment ids), ``audio`` (N, La, Da), ``vision`` (N, Lv, Dv), ``audio_lengths`` and
``vision_lengths`` (unaligned only), ``regression_labels`` and often
``classification_labels`` / ``annotations`` (SIMS adds ``regression_labels_{T,A,V}``).
MMSA-FET's pickles pad ``text_bert`` to a length of its own. Our export's pickles
(``msaflow export mmsa``, tasks/formats/mmsa.py) add ``text_lengths`` and a top-level
``msaflow`` dict: read back, they give the HDF5 arrays they came from.

The data enters the DAG at the HDF5 layer: ``ingest`` writes the manifest from the ids and
labels, ``extract`` has nothing to do, ``cache`` writes the one variant the pickle holds in
the contract layout (docs/contracts.md "cache").

``dataset.root`` names a pickle, or MMSA's release folder (``Processed/``): there each variant
comes from its own pickle, ``unaligned_<n>.pkl`` and ``aligned_<n>.pkl``, and the cache
variants follow what the source holds (``held_variants``: by file name, nothing unpickled;
params resolution drops a ``cache.variants`` entry the source lacks, msaflow/params.py).

Safety: unpickling can run arbitrary code. A file is opened only when the user names it
(``dataset.root`` / ``dataset.pkl.file``) or names the folder that holds it under MMSA's
release name; nothing else is searched for. It is read with an unpickler that only rebuilds
numpy arrays and plain Python containers, unless ``dataset.pkl.trusted: true`` says the file
is trusted.
"""

from __future__ import annotations

import pickle
import re
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from msaflow.io import atomic_path, file_digest, text_digest
from msaflow.paths import Paths
from msaflow.schema import Params
from tasks import sources
from tasks.contracts import (
    EXTRACT_ERROR_COLUMNS,
    INGEST_ERROR_COLUMNS,
    MANIFEST_COLUMNS,
    POLARITY,
    SPLITS,
    SourceError,
    read_manifest,
    video_of,
    write_manifest,
    write_report,
)
from tasks.formats.hdf5 import Running, create, finish
from tasks.formats.mmsa import (
    LENGTH_KEYS,
    META,
    META_FORMAT,
    SIMS_LABELS,
    TEXT_LENGTHS,
    strings,
)

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


class PickleFormatError(SourceError):
    """An MMSA pickle that does not have the published layout; names file, split and key."""


class _NumpyUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays/scalars and builtin containers; refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only numpy arrays and builtin containers are "
            "allowed (set dataset.pkl.trusted: true only for a file you trust)"
        )


# MMSA's release names in a Processed/ folder: unaligned_50.pkl, aligned_50.pkl, unaligned_39.pkl
RELEASE_NAME = re.compile(r"^(unaligned|aligned)_\d+\.pkl$", re.IGNORECASE)
VARIANT_ORDER = ("unaligned", "aligned")


def variant_by_name(path: Path) -> str | None:
    """The variant a pickle's file name says (``aligned_50.pkl``), or None."""
    stem = path.name.lower()
    return "unaligned" if "unaligned" in stem else "aligned" if "aligned" in stem else None


def pickle_files(params: Params) -> dict[str, Path]:
    """variant → the pickle that holds it: the named file (keyed "" when its name does not
    say the variant), or each release pickle of the named folder."""
    ds = params.dataset
    root = Path(ds.root)
    if ds.pkl.file is None and root.is_dir():
        found: dict[str, list[Path]] = {}
        for path in sorted(root.iterdir()):
            if (match := RELEASE_NAME.match(path.name)) and path.is_file():
                found.setdefault(match.group(1).lower(), []).append(path)
        if not found:
            raise PickleFormatError(
                f"{root}: is a folder without MMSA's release pickles (unaligned_<n>.pkl, "
                "aligned_<n>.pkl); point dataset.root at the pickle, or name it with "
                "dataset.pkl.file"
            )
        for variant, paths in found.items():
            if len(paths) > 1:
                raise PickleFormatError(
                    f"{root}: holds {len(paths)} {variant} pickles "
                    f"({', '.join(p.name for p in paths)}); name one with dataset.pkl.file"
                )
        return {v: found[v][0] for v in VARIANT_ORDER if v in found}
    path = root / ds.pkl.file if ds.pkl.file is not None else root
    if path.is_dir():
        raise PickleFormatError(
            f"{path}: is a folder; name the MMSA pickle with dataset.pkl.file "
            "(e.g. -S dataset.pkl.file=unaligned_50.pkl) or point dataset.root at it"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MMSA pickle not found (dataset.root, dataset.pkl.file)")
    return {variant_by_name(path) or "": path}


def held_variants(params: Params) -> tuple[str, ...] | None:
    """The variants the source holds, by file name (nothing unpickled); None when unknown
    (a missing root, which ingest reports, or a pickle whose name does not say)."""
    try:
        files = pickle_files(params)
    except (PickleFormatError, OSError):
        return None
    return None if "" in files else tuple(files)


def pickle_path(params: Params) -> Path:
    """The pickle the manifest comes from: the unaligned one when the folder has both."""
    return next(iter(pickle_files(params).values()))


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


def manifest_frame(params: Params, path: Path, data: dict[str, Any]) -> pd.DataFrame:
    """Manifest rows (docs/contracts.md "ingest") from a loaded pickle's ids and labels."""
    frames = []
    seen: dict[str, str] = {}
    for split in SPLITS:
        part = data[split]
        ids = strings(_array(path, split, part, "id", 1))
        texts = strings(_array(path, split, part, "raw_text", 1))
        if len(texts) != len(ids):
            raise PickleFormatError(
                f"{_where(path, split, 'raw_text')}: {len(texts)} entries for {len(ids)} ids"
            )
        label, classes, anns = _labels(path, split, part, params.dataset.task)
        if len(label) != len(ids):
            raise PickleFormatError(
                f"{_where(path, split, 'regression_labels')}: {len(label)} labels for "
                f"{len(ids)} ids"
            )
        for i, clip_id in enumerate(ids):
            if clip_id in seen:
                raise PickleFormatError(
                    f"{_where(path, split, 'id')}: clip id {clip_id!r} (index {i}) repeats "
                    f"an id of split {seen[clip_id]!r}"
                )
            seen[clip_id] = split
        frame = pd.DataFrame({
            "clip_id": ids,
            "video_id": [video_of(c) for c in ids],
            "split": split,
            "media": str(path),
            "start": "",
            "end": "",
            "text": texts,
            "label": label.astype(float),
            "label_class": classes,
            "annotation": anns,
        })
        for col, key in SIMS_LABELS.items():
            if key in part:
                frame[col] = _array(path, split, part, key, 1).astype(float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def build_manifest_from_pickle(params: Params, paths: Paths) -> dict[str, Any]:
    """Stage ``ingest`` for ``mmsa_pkl``: manifest from the pickle's ids/labels/splits."""
    path = pickle_path(params)
    data = load_pickle(path, params.dataset.pkl.trusted)
    frame = manifest_frame(params, path, data)
    low, high = params.dataset.label_range
    out = frame["label"].notna() & ~frame["label"].between(low, high)
    if out.any():
        first = frame.loc[out].iloc[0]
        raise PickleFormatError(
            f"{path}: [{first['split']!r}]['regression_labels']: {int(out.sum())} label(s) "
            f"outside dataset.label_range {[low, high]}, first {first['label']} "
            f"(clip {first['clip_id']!r})"
        )
    paths.interim.mkdir(parents=True, exist_ok=True)
    write_manifest(paths.manifest, frame)
    write_report(paths.ingest_errors, [], INGEST_ERROR_COLUMNS)
    counts = frame["split"].value_counts()
    return {
        "source": "mmsa_pkl",
        "pickle": str(path),
        "rows": len(frame),
        "clips": len(frame),
        "dropped": 0,
        "warnings": 0,
        **{f"{s}_clips": int(counts.get(s, 0)) for s in SPLITS},
        "extra_columns": [c for c in frame.columns if c not in MANIFEST_COLUMNS],
    }


def skip_extraction(params: Params, paths: Paths) -> dict[str, Any]:
    """Stage ``extract`` for ``mmsa_pkl``: the pickle holds the features; outputs stay empty."""
    paths.csd_dir.mkdir(parents=True, exist_ok=True)
    for stale in paths.csd_dir.glob("*.csd"):
        stale.unlink()  # a raw run of the same dataset name left these; cache ignores them
    write_report(paths.extract_errors, [], EXTRACT_ERROR_COLUMNS)
    return {
        "source": "mmsa_pkl",
        "clips": 0,
        "sequences": {},
        "note": "nothing to extract: the MMSA pickle holds the features; cache reads it",
    }


def _lengths(path: Path, split: str, part: dict[str, Any], key: str, sl: slice, cap: int,
             clamped: Counter) -> np.ndarray:
    raw = np.asarray(part[key])[sl].astype(np.float64)
    if not np.all(np.isfinite(raw)) or np.any(raw < 0) or np.any(raw != np.round(raw)):
        bad = int(np.flatnonzero(~np.isfinite(raw) | (raw < 0) | (raw != np.round(raw)))[0])
        raise PickleFormatError(
            f"{_where(path, split, key)}: index {sl.start + bad} holds {raw[bad]!r}, "
            "expected a non-negative integer length"
        )
    over = raw > cap
    clamped[key] += int(over.sum())
    return np.minimum(raw, cap).astype(np.int32)


def _zero_padding(x: np.ndarray, lengths: np.ndarray) -> None:
    """Rows at or past each sample's length become zero: the contract's right padding."""
    x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0


def _write_split(
    path: Path, split: str, part: dict[str, Any], g: h5py.Group, variant: str, task: str,
    seq: dict[str, int], dims: dict[str, int], stats: dict[str, Running] | None,
    report: dict[str, Any],
) -> int:
    """Convert and write one split block by block; train's real rows feed ``stats``."""
    ids = strings(_array(path, split, part, "id", 1))
    n = len(ids)
    label, classes, _ = _labels(path, split, part, task)
    ds = {
        "text_ids": create(g, "text_ids", (n, seq["tokens"]), np.int32),
        "text_mask": create(g, "text_mask", (n, seq["tokens"]), bool),
    }
    for m in ("words", "audio", "vision"):
        ds[m] = create(g, m, (n, seq[m], dims[m]), np.float32)
        ds[f"{m}_lengths"] = create(g, f"{m}_lengths", (n,), np.int32)
    keep = np.ones(n, bool)
    for start in range(0, n, BLOCK):
        sl = slice(start, min(n, start + BLOCK))
        tb = np.asarray(part["text_bert"][sl])
        mask = tb[:, 1] > 0  # (B, L)
        ds["text_ids"][sl] = tb[:, 0].astype(np.int32)
        ds["text_mask"][sl] = mask
        clamp = report["lengths_clamped"]
        if TEXT_LENGTHS in part:
            # An export's: text has one row per word; each stream says its own length.
            words_len = _lengths(path, split, part, TEXT_LENGTHS, sl, seq["words"], clamp)
            lens = {"words": words_len, **{
                m: _lengths(path, split, part, f"{m}_lengths", sl, seq[m], clamp)
                if f"{m}_lengths" in part else words_len
                for m in ("audio", "vision")
            }}
        elif variant == "aligned":
            # MMSA's rule for aligned data: every stream is as long as the text mask.
            words_len = np.minimum(mask.sum(1), seq["words"]).astype(np.int32)
            lens = {"words": words_len, "audio": words_len, "vision": words_len}
        else:
            words_len = np.minimum(mask.sum(1), seq["words"]).astype(np.int32)
            lens = {
                "words": words_len,
                "audio": _lengths(path, split, part, "audio_lengths", sl, seq["audio"], clamp),
                "vision": _lengths(path, split, part, "vision_lengths", sl, seq["vision"],
                                   clamp),
            }
        block = {
            m: np.asarray(part[key][sl], dtype=np.float32)  # (B, L, D): this block's copy
            for m, key in (("words", "text"), ("audio", "audio"), ("vision", "vision"))
        }
        for m, x in block.items():
            bad = ~np.isfinite(x)
            if m == "audio":
                # MMSA zeroes -inf in audio (COVAREP log features); NaN gets the same.
                report["audio_nonfinite"] += int(bad.sum())
            else:
                key = "text" if m == "words" else m
                for i in np.flatnonzero(bad.any(axis=(1, 2))):
                    report["bad"][ids[start + i]] = (
                        f"{_where(path, split, key)}: index {start + i} has NaN/Inf"
                    )
                    keep[start + i] = False
            x[bad] = 0.0
        ok = keep[sl]
        for m, x in block.items():
            _zero_padding(x, lens[m])
            ds[m][sl] = x
            ds[f"{m}_lengths"][sl] = lens[m]
            if stats is not None and m in stats:
                real = np.arange(x.shape[1])[None, :] < lens[m][:, None]  # (B, L)
                stats[m].update(x[ok][real[ok]])  # (rows, D): real rows of kept clips
        del block
    if not keep.all():
        # Clips with NaN/Inf text or vision are left out (as the csd path does): compact.
        idx = np.flatnonzero(keep)
        for name, d in ds.items():
            kept = d[...][idx]
            dtype = d.dtype
            del g[name]
            create(g, name, kept.shape, dtype)[...] = kept
    str_ids = [ids[i] for i in np.flatnonzero(keep)]
    texts = strings(_array(path, split, part, "raw_text", 1))
    create(g, "ids", (len(str_ids),), str)[...] = np.array(str_ids, dtype=object)
    create(g, "raw_text", (len(str_ids),), str)[...] = np.array(
        [texts[i] for i in np.flatnonzero(keep)], dtype=object
    )
    create(g, "label", (int(keep.sum()),), np.float32)[...] = label[keep]
    create(g, "label_class", (int(keep.sum()),), np.int64)[...] = classes[keep]
    return int(keep.sum())


def _class_names(path: Path, data: dict[str, Any], task: str) -> list[str]:
    """Regression: the polarity names; classification: each index's most common annotation."""
    if task == "regression":
        return list(POLARITY)
    if META in data and data[META]["task"] == task and data[META]["class_names"]:
        return [str(c) for c in data[META]["class_names"]]  # an export's, unused ones included
    votes: dict[int, Counter] = {}
    top = -1
    for split in SPLITS:
        part = data[split]
        _, classes, anns = _labels(path, split, part, task)
        top = max(top, int(classes.max(initial=-1)))
        for c, a in zip(classes, anns, strict=True):
            if c >= 0 and a:
                votes.setdefault(int(c), Counter())[a] += 1
    if top < 0:
        raise PickleFormatError(f"{path}: classification task but no clip has a class >= 0")
    return [votes[c].most_common(1)[0][0] if c in votes else f"class{c}" for c in range(top + 1)]


def _check_manifest(paths: Paths, data: dict[str, Any], path: Path) -> None:
    frame = read_manifest(paths.manifest, ("clip_id", "split"))
    for split in SPLITS:
        want = set(frame.loc[frame["split"] == split, "clip_id"])
        got = set(strings(np.asarray(data[split]["id"])))
        if want != got:
            raise PickleFormatError(
                f"{paths.manifest}: split {split!r} lists {len(want)} clips but {path} holds "
                f"{len(got)} ({len(want ^ got)} differ); re-run `ingest`"
            )


def build_cache_from_pickle(params: Params, paths: Paths) -> dict[str, Any]:
    """Stage ``cache`` for ``mmsa_pkl``: write ``paths.h5(variant)`` for each variant of
    ``cache.variants``, each from the pickle that holds it."""
    files = pickle_files(params)
    wanted = tuple(params.cache.variants)
    summary: dict[str, Any] = {"source": "mmsa_pkl", "clips": 0, "skipped_bad": 0, "bad": {}}
    done = []
    for key, path in files.items():
        if key and key not in wanted:
            continue  # params resolution left it out of cache.variants
        data = load_pickle(path, params.dataset.pkl.trusted)
        variant = detect_variant(path, data)
        if variant not in wanted:
            raise PickleFormatError(
                f"{path}: holds the {variant!r} variant only, but cache.variants = "
                f"{list(wanted)}; run with -S 'cache.variants=[{variant}]' (and models on "
                f"variant {variant!r})"
            )
        part = _cache_variant(params, paths, path, data, variant)
        done.append(variant)
        summary["clips"] = max(summary["clips"], part.pop("clips"))
        summary["skipped_bad"] += part.pop("skipped_bad")
        summary["bad"].update(part.pop("bad"))
        summary.setdefault("pickle", str(path))
        summary[f"{variant}_pickle"] = str(path)
        for key_, value in part.items():
            summary.setdefault(key_, value)
            if key_ in ("dims", "seq_len"):
                summary[f"{variant}_{key_}"] = value
            elif key_.startswith(variant):
                summary[key_] = value
    missing = [v for v in wanted if v not in done]
    if missing:
        raise PickleFormatError(
            f"{params.dataset.root}: holds no {' / '.join(missing)} pickle, but cache.variants ="
            f" {list(wanted)}; run with -S 'cache.variants=[{', '.join(done) or '...'}]'"
        )
    summary["variants"] = ", ".join(done)
    return summary


def _cache_variant(params: Params, paths: Paths, path: Path, data: dict[str, Any],
                   variant: str) -> dict[str, Any]:
    """Convert one loaded pickle into ``paths.h5(variant)``; its part of the summary."""
    _check_manifest(paths, data, path)
    task = params.dataset.task
    checked = {}
    dims = None
    for split in SPLITS:
        checked[split] = _check_split(path, split, data[split], variant, dims)
        dims = checked[split]["dims"]
    seq = checked["train"]["seq"]
    for split in SPLITS[1:]:
        if checked[split]["seq"] != seq:
            raise PickleFormatError(
                f"{path}: [{split!r}] sequence lengths {checked[split]['seq']} differ from "
                f"train's {seq}"
            )
    names = _class_names(path, data, task)
    meta = data.get(META)
    report: dict[str, Any] = {"audio_nonfinite": 0, "lengths_clamped": Counter(), "bad": {}}
    stats = {m: Running() for m in ("audio", "vision")}
    counts = {}
    with atomic_path(paths.h5(variant)) as tmp, h5py.File(tmp, "w") as f:
        for split in SPLITS:
            counts[split] = _write_split(
                path, split, data[split], f.create_group(split), variant, task, seq, dims,
                stats if split == "train" else None, report,
            )
            data[split] = None  # free this split's arrays before the next one is converted
        # An export names the encoder whose tokenizer made its ids: that one, not the param's.
        encoder = meta["text_encoder"] if meta else params.dataset.pkl.text_encoder
        finish(
            f, stats,
            variant=variant,
            task=task,
            class_names=names,
            dataset=params.dataset.name,
            text_encoder=encoder,
            feature_sets=meta["feature_sets"] if meta else {
                "words": f"mmsa_pkl:text ({encoder} features)",
                "tokens": f"mmsa_pkl:text_bert ({encoder})",
                **streams(params),
            },
            dims=dims,
            seq_len=seq,
            input_hash=text_digest(file_digest(path), variant, task, encoder,
                                   params.dataset.model_dump(mode="json")),
        )
    return {
        "clips": sum(counts.values()),
        **{f"{variant}_{s}": counts[s] for s in SPLITS},
        "dims": dims,
        "seq_len": seq,
        "audio_nonfinite_zeroed": report["audio_nonfinite"],
        "lengths_clamped": dict(report["lengths_clamped"]),
        "skipped_bad": len(report["bad"]),
        "bad": report["bad"],
    }


def streams(params: Params) -> dict[str, str]:
    """What the cache's audio and vision streams are: the pickle's own arrays."""
    return {"audio": "mmsa_pkl:audio", "vision": "mmsa_pkl:vision"}


sources.register_source(sources.Source(
    name="mmsa_pkl",
    about="an MMSA processed pickle (tensors; enters at the HDF5 cache)",
    manifest=build_manifest_from_pickle,
    extract=skip_extraction,
    cache=build_cache_from_pickle,
    streams=streams,
    variants=held_variants,
))
