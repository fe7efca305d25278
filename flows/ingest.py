"""Stage `ingest`: the dataset's raw layout → one manifest row per clip."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown, summary_markdown
from tasks import ingest


@task(name="build-manifest")
def manifest_task(params_path: str, overrides: dict | None = None) -> dict:
    """Read the raw layout named by ``dataset.layout`` and write the manifest."""
    params, paths = load(params_path, overrides)
    return ingest.build_manifest(params, paths)


@flow(name="ingest", log_prints=True)
def ingest_flow(params_path: str = "params.yaml", overrides: dict | None = None) -> dict:
    """Validate the raw dataset and write manifest.csv + ingest_errors.csv."""
    summary = manifest_task(params_path, overrides)
    publish_markdown("ingest-summary", summary_markdown("Ingest", summary))
    print(f"ingest: {summary}")
    return summary

