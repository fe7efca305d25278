"""`msaflow`: one command, a subcommand per stage (each runs that stage's Prefect flow).

msaflow demo | ingest | extract | cache       data stages
msaflow train MODEL | evaluate MODEL | report model stages
msaflow predict VIDEO... --model MODEL        a trained model's sentiment of new videos
msaflow run                                   the whole DAG as one Prefect flow run
msaflow repro [DVC ARGS...]                   `dvc repro` with one shared Prefect server
msaflow retrain [--min-delta X]               `dvc repro`, then promote challengers that beat
                                              their champion on valid (flows/retrain.py)
msaflow exp [DVC ARGS...]                     `dvc exp run` (takes -S) with one shared server
msaflow check                                 validate params.yaml and exit

Every stage command, `run` and `check` take ``-S KEY=VALUE`` (repeatable) to change params
for that run only, spelled as in `dvc exp run -S` (e.g. ``msaflow run -S dataset.name=meld
-S dataset.root=/data/MELD.Raw``); params.yaml is not modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from msaflow.overrides import parse_assignments
from msaflow.params import ParamsError, load_params


def _stage(name: str, args: argparse.Namespace, over: dict | None) -> object:
    # Flows are imported lazily: `msaflow check` and `--help` stay instant.
    if name == "demo":
        from flows.demo import demo_flow

        return demo_flow(args.params, over)
    if name == "ingest":
        from flows.ingest import ingest_flow

        return ingest_flow(args.params, over)
    if name == "extract":
        from flows.extract import run

        return run(args.params, over)
    if name == "cache":
        from flows.cache import cache_flow

        return cache_flow(args.params, over)
    if name == "train":
        from flows.train import train_flow

        return train_flow(args.model, args.params, over)
    if name == "evaluate":
        from flows.evaluate import evaluate_flow

        return evaluate_flow(args.model, args.params, over)
    if name == "report":
        from flows.evaluate import report_flow

        return report_flow(args.params, over)
    if name == "predict":
        from flows.predict import predict_flow

        return predict_flow(
            args.model, args.videos, checkpoint=args.checkpoint, text=args.text,
            transcripts=args.transcripts, out=args.out, params_path=args.params,
            overrides=over,
        )
    if name == "retrain":
        from flows.retrain import retrain_flow

        return retrain_flow(args.params, min_delta=args.min_delta, models=args.models)
    if name == "run":
        from flows.pipeline import pipeline

        return pipeline(args.params, record=not args.no_record, overrides=over)
    raise AssertionError(name)


def repro(dvc_args: list[str], command: tuple[str, ...] = ("repro",)) -> int:
    """Run `dvc repro` (or `dvc exp run`) with one Prefect server shared by every stage."""
    from flows.common import prefect_server

    name = " ".join(("dvc", *command))
    if command == ("repro",) and any(a in ("-S", "--set-param") for a in dvc_args):
        print("msaflow repro: `dvc repro` takes no -S; use `msaflow exp -S KEY=VALUE ...` "
              "(= `dvc exp run -S ...`) to run an experiment with changed params")
        return 2
    dvc = shutil.which("dvc")
    if dvc is None:
        print("msaflow: `dvc` not found on PATH (activate the venv: . .venv/bin/activate)")
        return 2
    start = time.perf_counter()
    with prefect_server():
        code = subprocess.run([dvc, *command, *dvc_args], env=os.environ.copy()).returncode
    print(f"{name} finished in {time.perf_counter() - start:.1f} s (exit {code})")
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="msaflow", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    sets = argparse.ArgumentParser(add_help=False)
    sets.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="change a param for this run only, as `dvc exp run -S` (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("demo", "generate the demo corpus"),
        ("ingest", "raw dataset → manifest"),
        ("extract", "features per clip → .csd"),
        ("cache", ".csd → HDF5 tensors (aligned / unaligned)"),
        ("report", "summary table across models"),
        ("check", "validate params and exit"),
    ]:
        sub.add_parser(name, help=text, parents=[sets])
    for name, text in [
        ("train", "train one model (all seeds)"),
        ("evaluate", "evaluate one model"),
    ]:
        p = sub.add_parser(name, help=text, parents=[sets])
        p.add_argument("model")
    p = sub.add_parser("predict", help="a trained model's sentiment of your videos → JSON",
                       parents=[sets])
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--model", required=True, help="the trained model (e.g. fasca_net)")
    p.add_argument("--checkpoint", default=None,
                   help="a seed<k>.ckpt or its folder (default: every seed of --model "
                        "trained on the params' dataset)")
    p.add_argument("--text", default=None, help="the transcript (one video)")
    p.add_argument("--transcripts", default=None, metavar="CSV",
                   help="transcripts: columns path (or clip_id = file name stem) and text")
    p.add_argument("--out", default="predictions.json", help="JSON written (predictions.json)")
    p = sub.add_parser("run", help="the whole DAG as one Prefect flow run", parents=[sets])
    p.add_argument("--no-record", action="store_true", help="do not `dvc commit` at the end")
    p = sub.add_parser("retrain", parents=[sets],
                       help="`dvc repro`, then champion vs challenger per model (valid split)")
    p.add_argument("--min-delta", type=float, default=0.0,
                   help="promote only when better on valid by more than this (default 0)")
    p.add_argument("--model", dest="models", action="append", default=None,
                   help="only this model (repeatable; default every train.models)")
    p = sub.add_parser("repro", help="`dvc repro` with one shared Prefect server")
    p.add_argument("dvc_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("exp", help="`dvc exp run` (e.g. -S KEY=VALUE) with one shared server")
    p.add_argument("dvc_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `msaflow` console command."""
    parser = build_parser()
    # `repro`/`exp` pass every further argument to dvc, options included (`exp -S a=b`):
    # argparse's REMAINDER alone does not take an option as the first one.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("repro", "exp"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("repro", "exp"):
        args.dvc_args = [*extra, *args.dvc_args]
    try:
        over = parse_assignments(getattr(args, "overrides", [])) or None
        params = load_params(args.params, over)
        if args.command == "check":
            extra = f" with {len(over)} override(s)" if over else ""
            print(
                f"{args.params}{extra}: valid (dataset {params.dataset.name}, preset "
                f"{params.dataset.preset}, models "
                f"{', '.join(params.train.models)})"
            )
            return 0
        if args.command in ("train", "evaluate") and args.model not in params.models:
            raise ParamsError(f"{args.params}: models.{args.model}: no such model section")
        if args.command == "retrain" and over:
            print("error: retrain runs `dvc repro`, which reads params.yaml as it is: -S "
                  "overrides would not apply; use `dvc exp run -S KEY=VALUE` (= `msaflow exp`) "
                  "for changed params, or edit params.yaml", file=sys.stderr)
            return 2
        if args.command == "retrain" and os.path.abspath(args.params) != os.path.abspath(
            "params.yaml"
        ):
            print(f"error: retrain runs `dvc repro`, which reads ./params.yaml, not "
                  f"{args.params}; run it from the repo root without --params", file=sys.stderr)
            return 2
        if args.command == "repro":
            return repro(args.dvc_args)
        if args.command == "exp":
            return repro(args.dvc_args, ("exp", "run"))
        if args.command in ("run", "retrain"):
            # Many flow runs (and for retrain, `dvc repro`'s stage processes): one local
            # server with the UI, as `msaflow repro` has, instead of Prefect's API-only one.
            from flows.common import prefect_server

            with prefect_server():
                result = _stage(args.command, args, over)
        else:
            result = _stage(args.command, args, over)
        if args.command == "predict" and result["videos"] == result["failed"]:
            return 1  # every video failed; their errors are in the table and the JSON
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a stage failed: one readable line; the flow log has the rest
        if os.environ.get("MSAFLOW_DEBUG"):
            raise
        print(f"error: {args.command} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
