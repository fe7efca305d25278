"""Stage `extract`: audio, vision and text features per clip (mapped, cached) → .csd."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import load, publish_markdown, summary_markdown
from msaflow.schema import ExtractParams
from tasks import extract


@task(name="extract-clip", retries=1, retry_delay_seconds=1)
def extract_clip_task(row: dict, cfg: ExtractParams, cache_dir: Path) -> dict:
    """Features of one clip (or its cached copy); failures are reported, not raised."""
    return extract.extract_clip(row, cfg, cache_dir)


@flow(name="extract", log_prints=True)
def extract_flow(params_path: str = "params.yaml", overrides: dict | None = None) -> dict:
    """Extract every clip of the manifest, clip-parallel, then write one .csd per feature set."""
    params, paths = load(params_path, overrides)

    def map_clips(rows: list[dict]) -> list[dict]:
        futures = extract_clip_task.map(
            rows, unmapped(params.extract), unmapped(paths.extract_cache)
        )
        return [f.result() for f in futures]

    summary = extract.run(params, paths, map_fn=map_clips)
    publish_markdown("extract-summary", summary_markdown("Extraction", summary))
    print(f"extract: {summary}")
    return summary


def run(params_path: str = "params.yaml", overrides: dict | None = None) -> dict:
    """Run the flow with as many worker threads as ``extract.workers``."""
    params, _ = load(params_path, overrides)
    runner = ThreadPoolTaskRunner(max_workers=params.extract.workers)
    return extract_flow.with_options(task_runner=runner)(params_path, overrides)

