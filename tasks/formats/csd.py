"""MMSDK computational sequences (``.csd``): a streaming h5py writer and a lazy reader.

Layout (the one ``mmsdk.mmdatasdk.computational_sequence`` writes and CMU publishes)::

    /<root name>/data/<entry>/features    (n, d)  numbers, or (n, 1) bytes for words
    /<root name>/data/<entry>/intervals   (n, 2)  float64 seconds [start, end]
    /<root name>/metadata/<key>           (1,)    variable-length string

Metadata values are written JSON-encoded (mmsdk HEAD's ``write_CSD``); the reader also
accepts the plain ``str(value)`` strings that mmsdk 0.0.6 and the official CMU files hold.
Entries are streamed one at a time, so neither side ever holds a whole dataset in memory.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from tasks.io import atomic_path

# mmsdk's featuresetMetadataTemplate (HEAD lists "dimension names" too) plus what deploy adds.
METADATA_KEYS: tuple[str, ...] = (
    "root name",
    "computational sequence description",
    "dimension names",
    "computational sequence version",
    "alignment compatible",
    "dataset name",
    "dataset version",
    "creator",
    "contact",
    "featureset bib citation",
    "dataset bib citation",
    "md5",
    "uuid",
)

# Fixed namespace so that the same content always gets the same uuid (reproducible outputs).
_UUID_NAMESPACE = uuid.UUID("6f1c1f0e-3d1b-5b8e-9a57-6d73616666c6")

# HDF5's metadata cache is adaptive per open file: it grows while the hit rate is low, which is
# what a one-pass walk over thousands of entries gives, up to 32 MiB of on-disk sizes (several
# times that in memory). A fixed 1 MiB keeps the group index hot yet the file's memory flat.
METADATA_CACHE_BYTES = 1 << 20


class CsdFormatError(ValueError):
    """A ``.csd`` file or entry that does not have the computational-sequence layout."""


def _default_metadata(root_name: str) -> dict[str, Any]:
    return {
        "root name": root_name,
        "computational sequence description": f"{root_name} features (msaflow)",
        "computational sequence version": "1.0",
        "alignment compatible": True,
        "dataset name": "unknown",
        "dataset version": "1.0",
        "creator": "msaflow",
        "contact": "",
        "featureset bib citation": "",
        "dataset bib citation": "",
    }


def _as_feature_array(features: Any, where: str) -> np.ndarray:
    """Numbers stay as they are; text becomes fixed-length UTF-8 bytes like MOSI's words."""
    arr = np.asarray(features)
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "utf-8")
    elif arr.dtype.kind == "O":
        try:
            flat = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in arr.ravel()]
        except TypeError as err:
            raise CsdFormatError(
                f"{where}: object features must be str or bytes ({err})"
            ) from None
        width = max((len(x) for x in flat), default=1)
        arr = np.array(flat, dtype=f"S{max(width, 1)}").reshape(arr.shape)
    if arr.dtype.kind == "S" and arr.dtype.itemsize == 0:
        arr = arr.astype("S1")
    if arr.dtype.kind not in "biufS":
        raise CsdFormatError(f"{where}: unsupported features dtype {arr.dtype}")
    return arr


def _check_entry(
    key: str, features: Any, intervals: Any, where: str
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
        raise CsdFormatError(f"{where}: entry key {key!r} is not a valid HDF5 group name")
    feats = _as_feature_array(features, where)
    try:
        ivals = np.asarray(intervals, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise CsdFormatError(f"{where}: intervals are not numeric ({err})") from None
    if feats.ndim != 2:
        raise CsdFormatError(f"{where}: features must be 2-D (n, d), got shape {feats.shape}")
    if ivals.ndim != 2 or ivals.shape[1] != 2:
        raise CsdFormatError(f"{where}: intervals must have shape (n, 2), got {ivals.shape}")
    if feats.shape[0] != ivals.shape[0]:
        raise CsdFormatError(
            f"{where}: features have {feats.shape[0]} rows but intervals {ivals.shape[0]}"
        )
    if not np.isfinite(ivals).all():
        row = int(np.argwhere(~np.isfinite(ivals))[0, 0])
        raise CsdFormatError(f"{where}: intervals row {row} is not finite: {ivals[row].tolist()}")
    bad = np.flatnonzero(ivals[:, 0] > ivals[:, 1])
    if bad.size:
        row = int(bad[0])
        raise CsdFormatError(
            f"{where}: intervals row {row} has start > end: {ivals[row].tolist()}"
        )
    return feats, ivals


def bound_metadata_cache(h5: h5py.File, nbytes: int = METADATA_CACHE_BYTES) -> None:
    """Give an open file a fixed-size metadata cache (no adaptive growth)."""
    config = h5.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = config.min_size = config.max_size = nbytes
    # H5C_incr__off, H5C_flash_incr__off, H5C_decr__off (h5py exports no names for them)
    config.incr_mode = config.flash_incr_mode = config.decr_mode = 0
    h5.id.set_mdc_config(config)


def _json_value(value: Any, key: str, path: Path) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise CsdFormatError(
            f"{path}: metadata {key!r} is not JSON-serialisable ({err})"
        ) from None


def write_csd(
    path: str | Path,
    root_name: str,
    entries: Iterable[tuple[str, np.ndarray, np.ndarray]],
    metadata: dict[str, Any] | None = None,
    *,
    compression: str | None = "gzip",
    compression_opts: int | None = 4,
) -> int:
    """Stream ``(key, features, intervals)`` into an mmsdk-layout ``.csd``; return the count."""
    path = Path(path)
    if not root_name or "/" in root_name:
        raise CsdFormatError(f"{path}: root name {root_name!r} is not a valid HDF5 group name")
    meta = _default_metadata(root_name)
    meta.update(metadata or {})
    if meta["root name"] != root_name:
        raise CsdFormatError(
            f"{path}: metadata 'root name' {meta['root name']!r} differs from {root_name!r}"
        )
    # Serialise early: a bad metadata value should fail before minutes of streaming.
    for key, value in meta.items():
        _json_value(value, key, path)

    # md5 of what was written (keys, dtypes, shapes, bytes): mmsdk leaves it None, we make it
    # a real content digest and derive a deterministic uuid from it.
    digest = hashlib.md5(root_name.encode(), usedforsecurity=False)
    count = 0
    width: int | None = None
    kind: str | None = None
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as h5:
        bound_metadata_cache(h5)
        data = h5.create_group(root_name).create_group("data")
        for item in entries:
            try:
                key, features, intervals = item
            except (TypeError, ValueError):
                raise CsdFormatError(
                    f"{path}: entry #{count} is not a (key, features, intervals) triple"
                ) from None
            where = f"{path}: entry {key!r}"
            feats, ivals = _check_entry(key, features, intervals, where)
            if key in data:
                raise CsdFormatError(f"{where}: duplicate entry key")
            if width is None:
                width, kind = feats.shape[1], feats.dtype.kind
            elif feats.shape[1] != width:
                raise CsdFormatError(
                    f"{where}: features have {feats.shape[1]} columns, earlier entries {width}"
                )
            elif (feats.dtype.kind == "S") != (kind == "S"):
                raise CsdFormatError(f"{where}: mixes text and numeric features across entries")
            group = data.create_group(key)
            for name, arr in (("features", feats), ("intervals", ivals)):
                # HDF5 cannot chunk (hence compress) an empty dataset.
                opts = (
                    {"compression": compression, "compression_opts": compression_opts}
                    if compression and arr.size
                    else {}
                )
                group.create_dataset(name, data=arr, track_times=False, **opts)
                digest.update(f"{key}/{name}:{arr.dtype.str}:{arr.shape}".encode())
                digest.update(np.ascontiguousarray(arr).tobytes())
            count += 1

        if "dimension names" not in meta:
            meta["dimension names"] = (
                ["word"] if kind == "S" else [f"dim_{i}" for i in range(width or 0)]
            )
        meta.setdefault("md5", digest.hexdigest())
        meta.setdefault("uuid", str(uuid.uuid5(_UUID_NAMESPACE, digest.hexdigest())))
        group = h5[root_name].create_group("metadata")
        for key in sorted(meta):
            ds = group.create_dataset(key, (1,), dtype=h5py.string_dtype(), track_times=False)
            ds[0] = _json_value(meta[key], key, path)
    return count


def _decode_metadata_value(raw: Any) -> Any:
    """JSON when it parses, else the plain string (mmsdk's metadata_to_dict, minus bytes)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return str(raw)


def decode_words(features: np.ndarray) -> list[str]:
    """Words of a (n, 1) bytes ``words.csd`` entry as Python strings."""
    return [
        w.decode("utf-8", errors="replace") if isinstance(w, bytes) else str(w)
        for w in np.asarray(features).reshape(len(features), -1)[:, 0]
    ]


class CsdReader:
    """Lazy, validating reader of one ``.csd``: entries are read only when asked for."""

    def __init__(self, path: str | Path, *, check_finite: bool = False) -> None:
        self.path = Path(path)
        self.check_finite = check_finite
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: computational sequence file not found")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise CsdFormatError(f"{self.path}: not an HDF5 file ({err})") from None
        try:
            bound_metadata_cache(self._h5)
            self._open_layout()
        except BaseException:
            self._h5.close()
            raise

    def _open_layout(self) -> None:
        roots = list(self._h5.keys())
        if len(roots) != 1 or not isinstance(self._h5[roots[0]], h5py.Group):
            raise CsdFormatError(
                f"{self.path}: expected exactly one root group, found {roots or 'none'}"
            )
        self.root_name: str = roots[0]
        root = self._h5[self.root_name]
        for part in ("data", "metadata"):
            if not isinstance(root.get(part), h5py.Group):
                raise CsdFormatError(f"{self.path}: /{self.root_name}/{part} group is missing")
        self._data: h5py.Group = root["data"]
        meta: dict[str, Any] = {}
        for key, ds in root["metadata"].items():
            if not isinstance(ds, h5py.Dataset) or ds.shape != (1,):
                raise CsdFormatError(
                    f"{self.path}: /{self.root_name}/metadata/{key} is not a (1,) string dataset"
                )
            meta[key] = _decode_metadata_value(ds[0])
        self.metadata: dict[str, Any] = meta

    def __enter__(self) -> CsdReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._h5.close()

    def keys(self) -> list[str]:
        """Entry keys (HDF5 order, i.e. sorted by name)."""
        return list(self._data.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self._data.keys())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._data

    def shape(self, key: str) -> tuple[int, ...]:
        """Features shape of one entry, from the HDF5 header only."""
        return tuple(self._entry(key)["features"].shape)

    def _entry(self, key: str) -> h5py.Group:
        where = f"{self.path}: /{self.root_name}/data/{key}"
        if key not in self._data:
            raise KeyError(f"{self.path}: no entry {key!r} in <{self.root_name}>")
        group = self._data[key]
        if not isinstance(group, h5py.Group):
            raise CsdFormatError(f"{where} is not a group")
        for part in ("features", "intervals"):
            if not isinstance(group.get(part), h5py.Dataset):
                raise CsdFormatError(f"{where}/{part} is missing")
        return group

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features, intervals)`` of one entry, validated; nothing else is read."""
        group = self._entry(key)
        where = f"{self.path}: /{self.root_name}/data/{key}"
        f_ds, i_ds = group["features"], group["intervals"]
        if f_ds.ndim != 2:
            raise CsdFormatError(f"{where}/features must be 2-D, got shape {f_ds.shape}")
        if i_ds.ndim != 2 or i_ds.shape[1] != 2:
            raise CsdFormatError(f"{where}/intervals must be (n, 2), got shape {i_ds.shape}")
        if f_ds.shape[0] != i_ds.shape[0]:
            raise CsdFormatError(
                f"{where}: features have {f_ds.shape[0]} rows but intervals {i_ds.shape[0]}"
            )
        features, intervals = f_ds[()], i_ds[()]
        if intervals.dtype.kind not in "iuf":
            raise CsdFormatError(f"{where}/intervals are not numeric ({intervals.dtype})")
        if not np.isfinite(intervals).all():
            row = int(np.argwhere(~np.isfinite(intervals))[0, 0])
            raise CsdFormatError(f"{where}/intervals row {row} is not finite")
        if self.check_finite and features.dtype.kind in "fc" and not np.isfinite(features).all():
            row, col = (int(x) for x in np.argwhere(~np.isfinite(features))[0])
            raise CsdFormatError(f"{where}/features has NaN/Inf (row {row}, column {col})")
        return features, intervals

    def __getitem__(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.get(key)

    def items(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Stream ``(key, features, intervals)``, the same triples ``write_csd`` takes."""
        for key in self._data.keys():
            features, intervals = self.get(key)
            yield key, features, intervals


def read_csd(path: str | Path, *, check_finite: bool = False) -> CsdReader:
    """Open a ``.csd`` lazily (use as a context manager)."""
    return CsdReader(path, check_finite=check_finite)
