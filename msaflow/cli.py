"""`msaflow`: the one command line of the pipeline (each subcommand runs a Prefect flow).

msaflow demo | ingest | extract | cache       data stages
msaflow train | evaluate | robustness MODEL   model stages (then: report)
msaflow predict VIDEO... --model MODEL        a trained model's sentiment of new videos
msaflow export mmsa [--variant V] [--out F]   a cache variant as MMSA's pickle (for MMSA)
msaflow run                                   the whole DAG as one Prefect flow run
msaflow repro [DVC ARGS...]                   `dvc repro` with one shared Prefect server
msaflow exp [DVC ARGS...]                     `dvc exp run --temp` (takes -S), one shared server
msaflow exp show                              experiments side by side: changed params, metrics
msaflow retrain [--serve] [--roll-back MODEL] `dvc repro`, then promote challengers that beat
                                              their champion on valid; or serve it on a cron
msaflow check                                 validate params.yaml and exit

Every stage command, `run`, `predict`, `export` and `check` take ``-S KEY=VALUE`` (repeatable) to
change params for that run only, spelled as in `dvc exp run -S` (e.g. ``msaflow run -S
dataset.name=meld -S dataset.root=/data/MELD.Raw``); params.yaml is not modified.
``python -m flows.pipeline`` and ``python -m flows.retrain`` are `msaflow run` and
`msaflow retrain` under their module names.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from msaflow import environment
from msaflow.errors import ParamsError
from msaflow.overrides import parse_assignments
from msaflow.params import load_params

DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 (UTC): weekly, at a quiet hour
DEFAULT_NAME = "weekly"
STAGES = (
    ("demo", "generate the demo corpus (data/raw/demo)"),
    ("ingest", "the dataset's raw files → manifest.csv + ingest_errors.csv"),
    ("extract", "features per clip → one .csd per feature set + extract_errors.csv"),
    ("cache", ".csd files → HDF5 tensors (aligned / unaligned)"),
    ("report", "the summary table across models (reports/summary_<dataset>.md)"),
    ("check", "validate params (and -S overrides) and exit"),
)


def _models_help() -> str:
    from models import registry

    return "one of: " + ", ".join(registry.available())


def _run_stage(args: argparse.Namespace, over: dict[str, Any] | None) -> Any:
    """Run the flow of a stage command (flows are imported here: `--help` stays quick)."""
    name = args.command
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
    if name == "robustness":
        from flows.robustness import robustness_flow

        return robustness_flow(args.model, args.params, over)
    if name == "report":
        from flows.evaluate import report_flow

        return report_flow(args.params, over)
    if name == "export":
        from flows.common import load
        from flows.export import export_flow
        from tasks.export import cache_file

        # A bad request (no cache, a variant not built) is an error line, not a failed run.
        cache_file(*load(args.params, over), args.variant)
        return export_flow(args.format, args.variant, args.out, args.params, over,
                           args.normalize)
    if name == "predict":
        from flows.predict import predict_flow

        return predict_flow(
            args.model, args.videos, checkpoint=args.checkpoint, text=args.text,
            transcripts=args.transcripts, out=args.out, params_path=args.params,
            overrides=over, asr=args.asr,
        )
    raise AssertionError(name)


def _retrain(args: argparse.Namespace) -> int:
    from flows.common import prefect_server
    from flows.retrain import flow_parameters, retrain_flow, roll_back, serve_kwargs

    if args.roll_back:
        roll_back(args.params, args.roll_back)
        return 0
    parameters = flow_parameters(args.params, args.min_delta, args.models)
    kwargs = serve_kwargs(args.cron, args.name, parameters) if args.serve else None
    # The server named by PREFECT_API_URL (`make ui`), else a local one with its UI (and its
    # scheduler) that lives as long as this process.
    with prefect_server():
        if kwargs is not None:
            retrain_flow.serve(**kwargs)
        else:
            retrain_flow(**parameters)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="msaflow", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:12]),
    )
    parser.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    sets = argparse.ArgumentParser(add_help=False)
    sets.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="change a param for this run only, as `dvc exp run -S` (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in STAGES:
        sub.add_parser(name, help=text, description=text, parents=[sets])
    models = _models_help()
    for name, text in [
        ("train", "train one model, every seed of train.seeds"),
        ("evaluate", "score one model's checkpoints on valid and test"),
        ("robustness", "score one model's checkpoints with modalities absent, missing and "
                       "noisy (params robustness.*)"),
    ]:
        p = sub.add_parser(name, help=text, description=text, parents=[sets])
        p.add_argument("model", metavar="MODEL", help=models)
    text = "a trained model's sentiment of your videos → JSON"
    p = sub.add_parser("predict", help=text, description=text, parents=[sets])
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video file(s) to score (any container PyAV reads: mp4, avi, mkv...)")
    p.add_argument("--model", required=True, help=f"the trained model ({models})")
    p.add_argument("--checkpoint", default=None,
                   help="a seed<k>.ckpt or its folder (default: every seed of --model "
                        "trained on the params' dataset)")
    p.add_argument("--text", default=None, help="the transcript (one video)")
    p.add_argument("--transcripts", default=None, metavar="CSV",
                   help="transcripts: columns path (or clip_id = file name stem) and text")
    p.add_argument("--out", default=None,
                   help="JSON written (default: predictions/<dataset>/<model>.json, which git "
                        "ignores)")
    p.add_argument("--asr", choices=("none", "pocketsphinx", "whisper"), default=None,
                   help="speech recognition for a video without a transcript (default: "
                        "extract.text.asr, else pocketsphinx for English); whisper uses "
                        "extract.text.asr_model")
    text = ("one variant of the dataset's HDF5 cache as a file the field's tools read: mmsa = "
            "MMSA's processed pickle (MMSA_run(..., custom_feature=FILE))")
    p = sub.add_parser("export", help=text, description=text, parents=[sets])
    p.add_argument("format", choices=("mmsa",), metavar="FORMAT", help="mmsa")
    p.add_argument("--variant", choices=("unaligned", "aligned"), default=None,
                   help="the cache variant (default: the first of cache.variants that is "
                        "built)")
    p.add_argument("--out", default=None,
                   help="the file (or a folder for it) to write (default: data/exports/"
                        "<dataset>/mmsa/<variant>_<text length>.pkl, MMSA's release name)")
    p.add_argument("--normalize", action="store_true",
                   help="z-score audio and vision with the cache's train statistics, as our "
                        "models see them (for MMSA models that use features as they come, "
                        "e.g. ef_lstm)")
    text = "the whole DAG as one Prefect flow run (then `dvc commit`)"
    p = sub.add_parser("run", help=text, description=text, parents=[sets])
    p.add_argument("--no-record", action="store_true", help="do not `dvc commit` at the end")
    text = "`dvc repro`, then champion vs challenger per model (valid split); or --serve it"
    p = sub.add_parser("retrain", help=text, description=text, parents=[sets])
    p.add_argument("--min-delta", type=float, default=0.0,
                   help="promote only when better on valid by more than this (default 0)")
    p.add_argument("--model", dest="models", action="append", default=None,
                   help=f"only this model (repeatable; default every train.models; {models})")
    p.add_argument("--serve", action="store_true",
                   help="serve as a scheduled Prefect deployment instead of running once")
    p.add_argument("--cron", default=DEFAULT_CRON,
                   help=f"schedule for --serve, UTC (default {DEFAULT_CRON!r}: weekly)")
    p.add_argument("--name", default=DEFAULT_NAME,
                   help=f"deployment name for --serve (default {DEFAULT_NAME!r})")
    p.add_argument("--roll-back", metavar="MODEL", default=None,
                   help="make MODEL's previous champion current again (no repro) and exit")
    for name, text in [
        ("repro", "`dvc repro` with one shared Prefect server; DVC_ARGS go to dvc "
                  "(e.g. a stage name, --force)"),
        ("exp", "`dvc exp run --temp` with one shared Prefect server: the experiment runs "
                "in a temporary copy, the workspace stays as it is; DVC_ARGS go to dvc (e.g. "
                "-S KEY=VALUE, --name NAME; --queue; --workspace runs it in the workspace). "
                "`msaflow exp show`: each experiment's changed params and test metric per "
                "model"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("dvc_args", nargs=argparse.REMAINDER, metavar="DVC_ARGS",
                       help="passed to dvc as they are")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `msaflow` console command."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C outside a dvc run (which handles its own): no traceback
        print("\nmsaflow: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    environment.apply()  # before any flow (and Prefect) is imported
    parser = build_parser()
    # `repro`/`exp` pass every further argument to dvc, options included (`exp -S a=b`):
    # argparse's REMAINDER alone does not take an option as the first one.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("repro", "exp"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("repro", "exp"):
        from flows.repro import exp_show, repro

        dvc_args = [*extra, *args.dvc_args]
        if args.command == "exp" and dvc_args[:1] == ["show"]:
            return exp_show(dvc_args[1:])
        command = ("repro",) if args.command == "repro" else ("exp", "run")
        return repro(dvc_args, command)
    try:
        over = parse_assignments(getattr(args, "overrides", [])) or None
        params = load_params(args.params, over)
        if args.command == "check":
            extra_s = f" with {len(over)} override(s)" if over else ""
            print(
                f"{args.params}{extra_s}: valid (dataset {params.dataset.name}, preset "
                f"{params.dataset.preset}, models "
                f"{', '.join(params.train.models)})"
            )
            return 0
        if args.command in ("train", "evaluate", "robustness") and args.model not in params.models:
            raise ParamsError(f"{args.params}: models.{args.model}: no such model section")
        if args.command == "retrain":
            if over:
                print("error: retrain runs `dvc repro`, which reads params.yaml as it is: -S "
                      "overrides would not apply; use `dvc exp run -S KEY=VALUE` (= `msaflow "
                      "exp`) for changed params, or edit params.yaml", file=sys.stderr)
                return 2
            if os.path.abspath(args.params) != os.path.abspath("params.yaml"):
                print(f"error: retrain runs `dvc repro`, which reads ./params.yaml, not "
                      f"{args.params}; run it from the repo root without --params",
                      file=sys.stderr)
                return 2
            return _retrain(args)
        if args.command == "run":
            # Many flow runs: one local server with the UI, as `msaflow repro` has, instead
            # of Prefect's API-only one.
            from flows.common import prefect_server
            from flows.pipeline import pipeline

            with prefect_server():
                pipeline(args.params, record=not args.no_record, overrides=over)
            return 0
        result = _run_stage(args, over)
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
