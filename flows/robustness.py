"""Stage `robustness`: one model's checkpoints under missing and noisy modalities."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown, summary_markdown
from tasks import robustness


@task(name="robustness-model")
def robustness_task(params_path: str, model: str, overrides: dict | None = None) -> dict:
    """Every seed's checkpoint under every condition of params' ``robustness`` section."""
    params, paths = load(params_path, overrides)
    return robustness.evaluate_robustness(params, paths, model)


@flow(name="robustness", flow_run_name="robustness-{model}", log_prints=True)
def robustness_flow(
    model: str, params_path: str = "params.yaml", overrides: dict | None = None
) -> dict:
    """Write reports/<dataset>/<model>/{robustness.json,robustness.csv}."""
    summary = robustness_task(params_path, model, overrides)
    publish_markdown(f"robustness-{model}", summary_markdown(f"Robustness: {model}", summary))
    return summary
