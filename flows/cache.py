"""Stage `cache`: .csd → aligned and unaligned HDF5 tensors per split."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown, summary_markdown
from tasks import cache


@task(name="build-hdf5-cache")
def cache_task(params_path: str, overrides: dict | None = None) -> dict:
    """Align (when asked) and write every variant of the HDF5 cache."""
    params, paths = load(params_path, overrides)
    return cache.build_cache(params, paths)


@flow(name="cache", log_prints=True)
def cache_flow(params_path: str = "params.yaml", overrides: dict | None = None) -> dict:
    """Build data/processed/<dataset>/<variant>.h5 for every variant in params."""
    summary = cache_task(params_path, overrides)
    publish_markdown("cache-summary", summary_markdown("HDF5 cache", summary))
    print(f"cache: {summary}")
    return summary

