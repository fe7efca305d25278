"""Text files a user writes (label files, transcripts, clip lists), read one way everywhere.

Each line is decoded on its own, so a byte that is not valid in the file's encoding costs
that line a U+FFFD, never the file: the lines that did not decode are kept with the place
of the bad byte, and the caller reports them with the file and line named (ingest in
``ingest_errors.csv``, predict in the video's ``notes``). A UTF-8 BOM (spreadsheet exports)
is dropped and header names are stripped of spaces. Nothing here raises on bad bytes.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def decode_lines(raw: bytes, encoding: str) -> tuple[list[str], dict[int, str]]:
    """Decode line by line; the lines (1-based) that did not decode, with where."""
    lines, bad = [], {}
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            lines.append(line.decode(encoding))
        except UnicodeDecodeError as err:
            bad[number] = f"byte 0x{line[err.start]:02x} at column {err.start + 1}"
            lines.append(line.decode(encoding, errors="replace"))
    return lines, bad


def read_text_lines(path: str | Path, encoding: str = "utf-8") -> tuple[list[str], dict[int, str]]:
    """A text file's lines without their line ends, and the lines that did not decode."""
    lines, bad = decode_lines(Path(path).read_bytes(), _with_bom(encoding))
    return [line.rstrip("\r\n") for line in lines], bad


def decoding_problem(path: str | Path, line: int, where: str, encoding: str) -> str:
    """The message of a line that did not decode (``where``: from ``decode_lines``)."""
    return (f"{path} line {line}: not valid {encoding} ({where}), decoded with U+FFFD "
            "replacement")


def _with_bom(encoding: str) -> str:
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


@dataclass
class UserCsv:
    """A user's CSV, decoded: its header, its records with their first line, and the lines
    that did not decode."""

    path: Path
    encoding: str
    header: list[str]
    # (first line, last line, record); a quoted newline makes a record span lines, and a
    # record with more fields than the header keeps them under the key None (csv module)
    records: list[tuple[int, int, dict[str, str | None]]]
    bad: dict[int, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[int, int, dict[str, str | None]]]:
        return iter(self.records)

    def decoding_problems(self, first: int, last: int | None = None) -> list[str]:
        """One message per line of ``first``..``last`` (a record) that did not decode."""
        return [decoding_problem(self.path, n, self.bad[n], self.encoding)
                for n in range(first, (last or first) + 1) if n in self.bad]


def read_csv(path: str | Path, encoding: str = "utf-8") -> UserCsv:
    """The CSV at ``path`` (FileNotFoundError naming it when absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    lines, bad = decode_lines(path.read_bytes(), _with_bom(encoding))
    reader = csv.DictReader(io.StringIO("".join(lines), newline=""))
    header = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = header
    records = []
    previous_end = 1  # the header's last line
    for record in reader:
        records.append((previous_end + 1, reader.line_num, record))
        previous_end = reader.line_num
    return UserCsv(path, encoding, header, records, bad)
