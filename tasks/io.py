"""Atomic writes and content hashes: nothing half-written ever looks like an artifact.

A file is written to a temporary sibling and renamed when complete; a folder of files
(``atomic_dir``) is built beside its target and swapped in whole. A write the disk refuses
(full, read-only, over quota) is an :class:`OutputError` naming the file the user asked for
and the cause, not the temporary name; ``check_writable`` finds that out before any work.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would race other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


class OutputError(OSError):
    """An output that cannot be written; the message names the path and the cause."""


# What a full disk, a read-only file system or a quota say: about the output, not the input.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})


def _output_error(path: Path, err: OSError) -> OutputError:
    out = OutputError(f"{path}: cannot be written: {err.strerror or err}")
    out.errno = err.errno  # the cause's, for callers that look; the message is the text
    return out


def check_writable(path: str | Path) -> None:
    """Fail now, naming ``path``, when a file cannot be created where ``path`` goes (its
    folder made if need be): before the work whose result it would hold."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        try:
            os.write(fd, b"\0" * 4096)  # a full disk refuses data, not always the name
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise _output_error(path, err) from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    The file gets the mode a plain ``open(path, "w")`` would give (mkstemp's is 0600). The
    disk refusing the write (full, read-only) is an OutputError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _output_error(path, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            if tmp_path.is_file():
                tmp_path.chmod(0o666 & ~_umask())
            os.replace(tmp_path, path)
        except OSError as err:
            if err.errno in _WRITE_ERRNOS and not isinstance(err, OutputError):
                raise _output_error(path, err) from None
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary sibling folder; when the block succeeds it replaces ``path``
    whole (the old folder goes), else it is removed and ``path`` stays as it was: a stage's
    folder of outputs appears complete or not at all."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise _output_error(path, err) from None
    try:
        try:
            yield tmp
            tmp.chmod(0o777 & ~_umask())
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                if old is not None:
                    os.replace(old, path)  # the folder as it was
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as err:
            if err.errno in _WRITE_ERRNOS and not isinstance(err, OutputError):
                raise _output_error(path, err) from None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, pretty-printed and key-sorted for stable diffs."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_digest(*parts: Any) -> str:
    """SHA-256 of a JSON rendering of ``parts`` (stable key order)."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable).encode()
    return hashlib.sha256(blob).hexdigest()
