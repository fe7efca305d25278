"""`predict`: a trained model's sentiment of new videos → JSON (not a DVC stage)."""

from __future__ import annotations

from prefect import flow, task

from flows.common import load, publish_markdown
from tasks import predict


@task(name="predict-videos")
def predict_task(
    params_path: str,
    model: str,
    videos: list[str],
    checkpoint: str | None = None,
    text: str | None = None,
    transcripts: str | None = None,
    out: str | None = None,
    overrides: dict | None = None,
    asr: str | None = None,
) -> dict:
    """Extract, build the model input as the cache does, score with every seed; write ``out``."""
    params, paths = load(params_path, overrides)
    out = out or str(paths.predictions(model))
    return predict.predict_videos(
        params, paths, model, videos,
        checkpoint=checkpoint, text=text, transcripts=transcripts, out=out, asr=asr,
    )


@flow(name="predict", flow_run_name="predict-{model}", log_prints=True)
def predict_flow(
    model: str,
    videos: list[str],
    checkpoint: str | None = None,
    text: str | None = None,
    transcripts: str | None = None,
    out: str | None = None,
    params_path: str = "params.yaml",
    overrides: dict | None = None,
    asr: str | None = None,
) -> dict:
    """Sentiment of ``videos`` from ``model``'s checkpoints, written to ``out``."""
    doc = predict_task(
        params_path, model, videos, checkpoint, text, transcripts, out, overrides, asr
    )
    publish_markdown(
        f"predict-{model}",
        "```\n" + predict.format_table(doc["predictions"]) + "\n```\n",
        description=f"Predictions of {model} ({out or 'predictions/'})",
    )
    return doc

