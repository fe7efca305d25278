"""Stage `evaluate`: metrics, predictions and plots of one model; the cross-model report."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_image, publish_markdown
from tasks import evaluate


@task(name="evaluate-model")
def evaluate_task(params_path: str, model: str, overrides: dict | None = None) -> dict:
    """Score every seed's checkpoint on the valid and test splits."""
    params, paths = load(params_path, overrides)
    return evaluate.evaluate_model(params, paths, model)


@task(name="summarize-models")
def summarize_task(params_path: str, overrides: dict | None = None) -> str:
    """The markdown table across every evaluated model."""
    params, paths = load(params_path, overrides)
    return evaluate.summarize(params, paths)


@flow(name="evaluate", flow_run_name="evaluate-{model}", log_prints=True)
def evaluate_flow(
    model: str, params_path: str = "params.yaml", overrides: dict | None = None
) -> dict:
    """Write reports/<dataset>/<model>/{metrics.json,predictions.csv,pred_vs_true.png}."""
    return evaluate_task(params_path, model, overrides)


@flow(name="report", log_prints=True)
def report_flow(params_path: str = "params.yaml", overrides: dict | None = None) -> str:
    """Write reports/summary_<dataset>.md (and the robustness figure); publish both."""
    table = summarize_task(params_path, overrides)
    publish_markdown("metrics-summary", table, description="Test metrics per model")
    params, paths = load(params_path, overrides)
    if paths.robustness_figure.is_file():
        publish_image("robustness-curves", paths.robustness_figure,
                      f"{params.dataset.name}: robustness curves",
                      description="Every model under missing and noisy modalities")
    print(table)
    return table

