"""Stage `demo`: generate the built-in demo corpus (real mp4 clips + label.csv)."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown, summary_markdown
from tasks.demo import corpus


@task(name="generate-demo-corpus")
def generate_task(params_path: str, overrides: dict | None = None) -> dict:
    """Generate every clip of the demo corpus into ``Paths.demo_root``."""
    params, paths = load(params_path, overrides)
    return corpus.generate(params.demo, paths.demo_root, seed=params.seed)


@flow(name="demo", log_prints=True)
def demo_flow(params_path: str = "params.yaml", overrides: dict | None = None) -> dict:
    """Make the seeded demo corpus the one-command run starts from."""
    summary = generate_task(params_path, overrides)
    publish_markdown("demo-summary", summary_markdown("Demo corpus", summary))
    print(f"demo corpus: {summary}")
    return summary

