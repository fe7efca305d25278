"""What every stage flow shares: loading params, publishing artifacts, a local server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msaflow.params import Params, load_params
from msaflow.paths import Paths

# Quiet, offline defaults for Prefect runs started from this project (a user's own
# settings win: setdefault only).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load(
    params_path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
) -> tuple[Params, Paths]:
    """Validated params (params.yaml, then ``-S``-style ``overrides``) and their paths."""
    params = load_params(params_path, overrides)
    return params, Paths.from_params(params)


def publish_markdown(key: str, markdown: str, description: str = "") -> None:
    """Attach a markdown artifact to the current flow run (no-op outside a run)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    slug = "".join(c if c.isalnum() else "-" for c in key.lower()).strip("-")
    create_markdown_artifact(key=slug, markdown=markdown, description=description)


def summary_markdown(title: str, summary: dict) -> str:
    """A two-column markdown table of a stage summary's scalar entries."""
    rows = [f"### {title}", "", "| key | value |", "| --- | --- |"]
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append(f"| {key} | {value} |")
    return "\n".join(rows) + "\n"


@contextlib.contextmanager
def prefect_server() -> Iterator[str]:
    """Use ``PREFECT_API_URL`` if set, else start one local server for the whole block.

    Each stage is its own process under ``dvc repro``; without a server each would start
    Prefect's temporary one (seconds each). One shared server also lets a person watch
    every stage's flow run in the UI while the pipeline runs.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url
    print(f"Prefect server for this run: {server.address} (UI and API)")
    try:
        yield server.api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
