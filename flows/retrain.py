"""`retrain`: `dvc repro`, then champion vs challenger per model (tasks/retrain.py).

Run once: ``msaflow retrain`` or ``python -m flows.retrain``; undo a promotion:
``python -m flows.retrain --roll-back MODEL``. Serve on a schedule (a Prefect
deployment; runs while this process lives, on the server named by ``PREFECT_API_URL``, else
on a local server with its UI started for the process):
``python -m flows.retrain --serve [--cron "0 3 * * 1"] [--name weekly]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from prefect import flow, task

from flows.common import load, prefect_server, publish_markdown
from tasks import retrain

DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 (UTC): weekly, at a quiet hour
DEFAULT_NAME = "weekly"


def run_repro(dvc_args: list[str]) -> int:
    """`dvc repro` through msaflow.cli.repro (its stages report to this flow's server); the
    exit code."""
    from msaflow.cli import repro

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


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m flows.retrain`` (exposed for tests)."""
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__)
    parser.add_argument("--serve", action="store_true",
                        help="serve as a scheduled Prefect deployment instead of running once")
    parser.add_argument("--cron", default=DEFAULT_CRON,
                        help=f"schedule for --serve, UTC (default {DEFAULT_CRON!r}: weekly)")
    parser.add_argument("--name", default=DEFAULT_NAME,
                        help=f"deployment name for --serve (default {DEFAULT_NAME!r})")
    parser.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    parser.add_argument("--min-delta", type=float, default=0.0,
                        help="promote only when better on valid by more than this (default 0)")
    parser.add_argument("--model", dest="models", action="append", default=None,
                        help="only this model (repeatable; default every train.models)")
    parser.add_argument("--roll-back", metavar="MODEL", default=None,
                        help="make MODEL's previous/ champion current again (no repro) and exit")
    return parser


def flow_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The retrain_flow parameters the command line asks for."""
    if not args.min_delta >= 0:
        raise SystemExit(f"--min-delta must be >= 0, got {args.min_delta}")
    return {"params_path": args.params, "min_delta": args.min_delta, "models": args.models}


def serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``retrain_flow.serve`` (cron checked here, not at first run)."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=args.cron)
    except ValueError as err:
        raise SystemExit(f"--cron {args.cron!r}: not a valid cron expression ({err})") from err
    return {
        "name": args.name,
        "cron": args.cron,
        "parameters": flow_parameters(args),
        "limit": 1,  # never two retrains at once: both would promote into one folder
        "description": "dvc repro, then promote challengers that beat the champion on valid",
    }


def main(argv: list[str] | None = None) -> int:
    """Run the flow once, or serve it on its cron schedule."""
    args = build_parser().parse_args(argv)
    if args.roll_back:
        _, paths = load(args.params)
        record = retrain.roll_back(retrain.champion_dir(paths, args.roll_back))
        print(f"{args.roll_back}: champion is again {record['metric']} {record['value']:.4f} "
              f"(promoted {record.get('promoted_at')}); the undone one is in previous/")
        return 0
    kwargs = serve_kwargs(args) if args.serve else flow_parameters(args)
    # The server named by PREFECT_API_URL (`make ui`), else a local one with its UI (and its
    # scheduler) that lives as long as this process.
    with prefect_server():
        if args.serve:
            retrain_flow.serve(**kwargs)
        else:
            retrain_flow(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
