"""`retrain`: `dvc repro`, then champion vs challenger per model (tasks/retrain.py).

Run once: ``msaflow retrain``; undo a promotion: ``msaflow retrain --roll-back MODEL``.
Serve on a schedule (a Prefect deployment; runs while this process lives, on the server
named by ``PREFECT_API_URL``, else on a local server with its UI started for the process):
``msaflow retrain --serve [--cron "0 3 * * 1"] [--name weekly]``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows.common import load, publish_markdown
from runtime.dvc import repro
from tasks import retrain

DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 (UTC): weekly, at a quiet hour
DEFAULT_NAME = "weekly"


def run_repro(dvc_args: list[str]) -> int:
    """`dvc repro` with the shared server (its stages report to this flow's server); the
    exit code."""
    return repro(list(dvc_args))


@task(name="read-champions")
def champions_task(
    params_path: str, models: list[str] | None
) -> dict[str, dict[str, Any] | None]:
    """Every model's current champion record, validated before the long repro starts."""
    params, paths = load(params_path)
    return retrain.read_champions(paths, retrain.selected_models(params, models))


@task(name="dvc-repro")
def repro_task(dvc_args: list[str]) -> None:
    """Bring every stage up to date; a failed repro stops the flow before any promotion."""
    code = run_repro(dvc_args)
    if code != 0:
        raise RuntimeError(f"`dvc repro {' '.join(dvc_args)}` exited {code}; nothing promoted")


@task(name="compare-and-promote")
def promote_task(
    params_path: str, champions: dict[str, dict[str, Any] | None], min_delta: float
) -> list[dict[str, Any]]:
    """Challenger vs champion on valid per model; promote the winners atomically."""
    params, paths = load(params_path)
    decisions = retrain.compare_and_promote(params, paths, champions, min_delta)
    publish_markdown(
        f"retrain-{paths.dataset}",
        retrain.decisions_markdown(paths.dataset, decisions),
        description=f"Champion vs challenger per model ({paths.dataset}, valid split)",
    )
    return [d.as_dict() for d in decisions]


@flow(name="retrain", log_prints=True)
def retrain_flow(
    params_path: str = "params.yaml",
    min_delta: float = 0.0,
    models: list[str] | None = None,
    dvc_args: list[str] | None = None,
) -> list[dict[str, Any]]:
    """`dvc repro`, then promote each model whose challenger beats its champion on valid."""
    if not min_delta >= 0:
        raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
    champions = champions_task(params_path, models)
    repro_task(list(dvc_args or []))
    return promote_task(params_path, champions, min_delta)


def flow_parameters(
    params_path: str, min_delta: float, models: list[str] | None
) -> dict[str, Any]:
    """The retrain_flow parameters, checked."""
    if not min_delta >= 0:
        raise ValueError(f"--min-delta must be >= 0, got {min_delta}")
    return {"params_path": params_path, "min_delta": min_delta, "models": models}


def serve_kwargs(cron: str, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``retrain_flow.serve`` (cron checked here, not at first run)."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as err:
        raise ValueError(f"--cron {cron!r}: not a valid cron expression ({err})") from None
    return {
        "name": name,
        "cron": cron,
        "parameters": parameters,
        "limit": 1,  # never two retrains at once: both would promote into one folder
        "description": "dvc repro, then promote challengers that beat the champion on valid",
    }


def roll_back(params_path: str, model: str) -> dict[str, Any]:
    """Make ``model``'s previous champion current again (no repro); its record."""
    _, paths = load(params_path)
    record = retrain.roll_back(paths.champion(model))
    print(f"{model}: champion is again {record['metric']} {record['value']:.4f} "
          f"(promoted {record.get('promoted_at')}); the undone one is in previous/")
    return record

