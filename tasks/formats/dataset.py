"""Lazy torch Dataset over the `cache` HDF5 files (docs/contracts.md "cache").

A split whose arrays hold at most ``PRELOAD_BYTES`` is read into memory once, at
construction: reading a row through h5py costs about a millisecond (14 array lookups), which
the robustness stage pays 250 times per split and training once per epoch. A larger split
stays lazy: the file is opened on the first ``__getitem__`` of each process (DataLoader
workers fork or spawn with a pickled copy that holds no handle), and each sample reads only
its own row, one chunk per array, so memory stays flat whatever the cache size. Both paths
give the same samples, bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from models.base import DataSpec
from tasks.contracts import SPLITS
from tasks.formats.hdf5 import NORM_STREAMS, STREAMS

REQUIRED = (
    "ids",
    "text_ids",
    "text_mask",
    "words",
    "words_lengths",
    "audio",
    "audio_lengths",
    "vision",
    "vision_lengths",
    "label",
    "label_class",
)
# A feature with (near) zero train variance is left centred but unscaled.
MIN_STD = 1e-6
# Splits up to this size (all arrays, as stored) are held in memory; larger ones read rows lazily.
PRELOAD_BYTES = 256 * 2**20


class CacheFormatError(ValueError):
    """An HDF5 cache that does not follow the contract; the message names file and key."""


def _json_attr(f: h5py.File, key: str, path: Path) -> Any:
    if key not in f.attrs:
        raise CacheFormatError(f"{path}: root attribute {key!r} is missing")
    raw = f.attrs[key]
    try:
        return json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise CacheFormatError(f"{path}: root attribute {key!r} is not JSON: {raw!r}") from None


def _str_attr(f: h5py.File, key: str, path: Path) -> str:
    if key not in f.attrs:
        raise CacheFormatError(f"{path}: root attribute {key!r} is missing")
    value = f.attrs[key]
    return value.decode() if isinstance(value, bytes) else str(value)


def read_spec(path: str | Path) -> DataSpec:
    """The DataSpec of a cache file, from its root attributes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cache file not found (run the `cache` stage)")
    with h5py.File(path, "r") as f:
        return DataSpec(
            variant=_str_attr(f, "variant", path),
            task=_str_attr(f, "task", path),
            dims={k: int(v) for k, v in _json_attr(f, "dims", path).items()},
            seq_len={k: int(v) for k, v in _json_attr(f, "seq_len", path).items()},
            num_classes=int(f.attrs.get("num_classes", 1)),
            text_encoder=_str_attr(f, "text_encoder", path),
            dataset=_str_attr(f, "dataset", path),
            extra={
                "class_names": _json_attr(f, "class_names", path),
                "feature_sets": _json_attr(f, "feature_sets", path),
                "input_hash": _str_attr(f, "input_hash", path),
            },
        )


class H5Dataset(Dataset):
    """One split of a cache file; samples are dicts of tensors per models.base's contract."""

    def __init__(
        self, path: str | Path, split: str, normalize: bool = True,
        preload_bytes: int = PRELOAD_BYTES,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.path = Path(path)
        self.split = split
        self.normalize = normalize
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: cache file not found (run the `cache` stage)")
        # Validate and read the small things once; the handle is closed again so that the
        # object pickles cleanly into DataLoader workers.
        with h5py.File(self.path, "r") as f:
            if split not in f:
                raise CacheFormatError(f"{self.path}: split group {split!r} is missing")
            g = f[split]
            missing = [k for k in REQUIRED if k not in g]
            if missing:
                raise CacheFormatError(f"{self.path}: {split}/ lacks dataset(s) {missing}")
            self._len = int(g["ids"].shape[0])
            self._norm: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            if normalize:
                for m in NORM_STREAMS:
                    if f"norm/{m}/mean" not in f or f"norm/{m}/std" not in f:
                        raise CacheFormatError(
                            f"{self.path}: norm/{m}/{{mean,std}} missing (normalize=True)"
                        )
                    mean = f[f"norm/{m}/mean"][()].astype(np.float32)
                    std = f[f"norm/{m}/std"][()].astype(np.float32)
                    self._norm[m] = (mean, np.where(std < MIN_STD, 1.0, std).astype(np.float32))
            stored = sum(g[k].size * g[k].dtype.itemsize for k in REQUIRED)
            # in memory: the split's arrays, as the file stores them (rows sliced per item)
            self._arrays: dict[str, np.ndarray] | None = (
                {k: g[k][()] for k in REQUIRED} if stored <= preload_bytes else None
            )
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def preloaded(self) -> bool:
        """Whether the split is held in memory (see ``PRELOAD_BYTES``)."""
        return self._arrays is not None

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles are per process; reopen after unpickling
        state["_pid"] = None
        return state

    def _group(self) -> h5py.Group:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.split]

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self._len:
            raise IndexError(f"{self.path}:{self.split}: index {index} outside [0, {self._len})")
        g: Any = self._arrays if self._arrays is not None else self._group()
        sample: dict[str, Any] = {}
        raw_id = g["ids"][index]
        sample["id"] = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        sample["text_ids"] = torch.from_numpy(g["text_ids"][index].astype(np.int64))
        sample["text_mask"] = torch.from_numpy(g["text_mask"][index].astype(bool))
        for m in STREAMS:
            x = g[m][index].astype(np.float32)  # (L, D)
            n_real = int(g[f"{m}_lengths"][index])
            mask = np.arange(x.shape[0]) < n_real
            if m in self._norm:
                mean, std = self._norm[m]
                # Only real rows: padding stays exactly zero so masks and padding agree.
                x[:n_real] = (x[:n_real] - mean) / std
            sample[m] = torch.from_numpy(x)
            sample[f"{m}_mask"] = torch.from_numpy(mask)
        sample["label"] = torch.tensor(float(g["label"][index]), dtype=torch.float32)
        sample["label_class"] = torch.tensor(int(g["label_class"][index]), dtype=torch.long)
        sample["index"] = torch.tensor(index, dtype=torch.long)
        return sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-sample tensors into a batch; ``id`` becomes a list of str."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    batch: dict[str, Any] = {}
    for key, value in samples[0].items():
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([s[key] for s in samples])
        else:
            batch[key] = [s[key] for s in samples]
    return batch
