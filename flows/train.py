"""Stage `train`: one model, every seed in params (GPU when present, CPU otherwise)."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown, summary_markdown
from tasks import train


@task(name="train-model")
def train_task(params_path: str, model: str, overrides: dict | None = None) -> dict:
    """Train ``model`` once per seed; checkpoints land in data/checkpoints/."""
    params, paths = load(params_path, overrides)
    return train.train_model(params, paths, model)


@flow(name="train", flow_run_name="train-{model}", log_prints=True)
def train_flow(
    model: str, params_path: str = "params.yaml", overrides: dict | None = None
) -> dict:
    """Train one registered model on the cached dataset."""
    summary = train_task(params_path, model, overrides)
    publish_markdown(f"train-{model}", summary_markdown(f"Training: {model}", summary))
    return summary

