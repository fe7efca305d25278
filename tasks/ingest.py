"""Stage ``ingest``: the dataset as its source reads it → manifest + ingest error report.

The source named by ``dataset.source`` (tasks/sources) does the reading: a raw layout's
release checked row by row, official CMU sequences, or an MMSA pickle. Every source writes
the same two files (docs/contracts.md "ingest"; columns in tasks/contracts.py).
"""

from __future__ import annotations

from typing import Any

from config.paths import Paths
from config.schema import Params
from tasks import sources


def build_manifest(params: Params, paths: Paths) -> dict[str, Any]:
    """Write the manifest and the ingest error report of ``dataset``; return a summary."""
    return sources.of(params).hook("manifest")(params, paths)
