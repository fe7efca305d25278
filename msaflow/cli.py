"""`msaflow`: the one command line of the pipeline (each stage command runs a Prefect flow).

The stage commands come from the stage table (tasks/stages.py); the others are below. Every
command that runs a flow reports to one local Prefect server shared by every command
(started on first use; ``msaflow server stop`` ends it), or to the one ``PREFECT_API_URL``
names. Parsing arguments and validating params import neither Prefect nor torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from config import environment
from config.errors import NotInWorkspace, ParamsError
from config.overrides import parse_assignments
from runtime import server
from tasks import stages
from tasks.io import OutputError

DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 (UTC): weekly, at a quiet hour
DEFAULT_NAME = "weekly"

# The commands besides the stages: (usage, what it does), for the epilog.
COMMANDS = (
    ("predict VIDEO... --model MODEL", "a trained model's sentiment of new videos"),
    ("export mmsa [--variant V] [--out F]", "a cache variant as MMSA's pickle (for MMSA)"),
    ("run", "the whole DAG as one Prefect flow run (stages in dvc.yaml's order)"),
    ("repro [DVC ARGS...]", "`dvc repro` on the shared Prefect server"),
    ("exp [DVC ARGS...]", "`dvc exp run --temp` (takes -S); `exp show`: side by side"),
    ("retrain [--serve] [--roll-back MODEL]", "`dvc repro`, then promote challengers that "
                                              "beat their champion on valid"),
    ("check", "validate params.yaml (and -S overrides) and exit"),
    ("server start | stop | status", "the shared local Prefect server (UI and API)"),
)


def _epilog() -> str:
    lines = ["stages (dvc.yaml runs them; each is also a command):"]
    for stage in stages.STAGES:
        usage = f"{stage.name} MODEL" if stage.per_model else stage.name
        lines.append(f"  msaflow {usage:<36} {stage.title}")
    lines.append("commands:")
    lines += [f"  msaflow {usage:<36} {text}" for usage, text in COMMANDS]
    lines += [
        "",
        "Every stage command, run, predict, export and check take -S KEY=VALUE (repeatable) to",
        "change params for that run only, spelled as in `dvc exp run -S` (e.g. msaflow run -S",
        "dataset.name=meld -S dataset.root=/data/MELD.Raw); params.yaml is not modified.",
    ]
    return "\n".join(lines)


def _models_help() -> str:
    from models import registry

    return "one of: " + ", ".join(registry.names())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="msaflow", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog(),
    )
    parser.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    sets = argparse.ArgumentParser(add_help=False)
    sets.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE",
                      help="change a param for this run only, as `dvc exp run -S` (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models = _models_help()
    for stage in stages.STAGES:
        p = sub.add_parser(stage.name, help=stage.title, description=stage.title,
                           parents=[sets])
        if stage.per_model:
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
    text = "validate params (and -S overrides) and exit"
    sub.add_parser("check", help=text, description=text, parents=[sets])
    text = ("the local Prefect server every msaflow command shares (started on first use, "
            "kept for the next commands)")
    p = sub.add_parser("server", help=text, description=text)
    p.add_argument("action", choices=("start", "stop", "status"), metavar="ACTION",
                   help="start | stop | status")
    for name, text in [
        ("repro", "`dvc repro` on the shared Prefect server; DVC_ARGS go to dvc "
                  "(e.g. a stage name, --force)"),
        ("exp", "`dvc exp run --temp` on the shared Prefect server: the experiment runs "
                "in a temporary copy, the workspace stays as it is; DVC_ARGS go to dvc (e.g. "
                "-S KEY=VALUE, --name NAME; --queue; --workspace runs it in the workspace). "
                "`msaflow exp show`: every experiment's changed params and test metric per "
                "model; `msaflow exp apply NAME`: its results into the workspace"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("dvc_args", nargs=argparse.REMAINDER, metavar="DVC_ARGS",
                       help="passed to dvc as they are")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `msaflow` console command."""
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # Ctrl-C outside a dvc run (which handles its own): no traceback
        print("\nmsaflow: interrupted", file=sys.stderr)
        code = 130
    if argv is None:  # the console command, not a call from Python
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the command once its work is done and reported: Prefect's queued logs and events
    sent, the terminal flushed, then ``os._exit``. The interpreter's own teardown (torch,
    MediaPipe, the models' memory) takes 1-2 s and does nothing a finished command needs;
    every output was already written whole (atomically) and every file closed."""
    if "prefect" in sys.modules:
        import contextlib

        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for worker in (APILogWorker, EventsWorker):
            with contextlib.suppress(Exception):
                worker.drain_all(timeout=10)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _prefect_api() -> Callable[[], None]:
    """Point Prefect at the user's server or the shared one, before Prefect is imported;
    the shared one is started now if none runs, and the returned call waits until it
    answers (so its start overlaps the command's own imports)."""
    url = server.user_api_url()
    if url is not None:
        os.environ["PREFECT_API_URL"] = url
        return lambda: None
    shared, started = server.start()
    os.environ["PREFECT_API_URL"] = shared.api_url
    if started:
        print(f"Prefect server started for msaflow: {shared.address} (UI and API; kept for "
              "later commands; `msaflow server stop` ends it)", file=sys.stderr)
    return lambda: server.wait(shared)


def _server(action: str) -> int:
    if action == "stop":
        stopped = server.stop()
        print(f"stopped the Prefect server on {stopped.address}" if stopped
              else "no msaflow Prefect server runs")
        return 0
    if action == "start":
        server.ensure()
    shared = server.recorded()
    if shared is None:
        print(f"no msaflow Prefect server runs (state: {server.state_file()})")
        return 0 if action == "status" else 1
    answers = server.healthy(shared.api_url)
    print(f"Prefect server {shared.address} (pid {shared.pid}, since {shared.started}): "
          f"{'answers' if answers else 'does not answer'}; its log: {server.log_file()}")
    return 0


def _load(args: argparse.Namespace, over: dict[str, Any] | None) -> Any:
    from tasks.params import load_params

    return load_params(args.params, over)


def _run(args: argparse.Namespace, over: dict[str, Any] | None) -> int:
    """A command that runs a flow (params already valid)."""
    ready = _prefect_api()
    from flows.common import quiet_terminal

    quiet_terminal()  # a handled error is one line on the terminal, not a traceback
    name = args.command
    if name == "run":
        from flows.pipeline import pipeline

        ready()
        pipeline(args.params, record=not args.no_record, overrides=over)
        return 0
    if name == "export":
        from flows.common import load
        from flows.export import export_flow
        from tasks.export import cache_file, check_out

        # A bad request (no cache, a variant not built, an --out that cannot be written) is
        # an error line, not a failed run.
        params, paths = load(args.params, over)
        check_out(paths, args.out)
        cache_file(params, paths, args.variant)
        ready()
        export_flow(args.format, args.variant, args.out, args.params, over, args.normalize)
        return 0
    if name == "predict":
        from flows.predict import predict_flow
        from tasks.predict import preload

        preload(_load(args, over))  # the extractors' libraries, while the server starts
        ready()
        result = predict_flow(
            args.model, args.videos, checkpoint=args.checkpoint, text=args.text,
            transcripts=args.transcripts, out=args.out, params_path=args.params,
            overrides=over, asr=args.asr,
        )
        # every video failed: their errors are in the table and the JSON
        return 1 if result["videos"] == result["failed"] else 0
    if name == "retrain":
        return _retrain(args, ready)
    from flows.stages import run_stage

    ready()
    run_stage(name, args.params, over, getattr(args, "model", None))
    return 0


def _retrain(args: argparse.Namespace, ready: Callable[[], None]) -> int:
    if os.path.abspath(args.params) != os.path.abspath("params.yaml"):
        print(f"error: retrain runs `dvc repro`, which reads ./params.yaml, not "
              f"{args.params}; run it from the repo root without --params", file=sys.stderr)
        return 2
    from flows.retrain import flow_parameters, retrain_flow, roll_back, serve_kwargs

    if args.roll_back:
        roll_back(args.params, args.roll_back)
        return 0
    parameters = flow_parameters(args.params, args.min_delta, args.models)
    ready()
    if args.serve:
        retrain_flow.serve(**serve_kwargs(args.cron, args.name, parameters))
    else:
        retrain_flow(**parameters)
    return 0


def _experiments(args: list[str]) -> int:
    """`msaflow exp show [DVC_ARGS]` and `msaflow exp apply NAME`."""
    from runtime import experiments

    if args[0] == "show":
        return experiments.exp_show(args[1:])
    asked = any(a in ("-h", "--help") for a in args[1:])
    if len(args) != 2 or args[1].startswith("-"):
        print("usage: msaflow exp apply NAME\n\nBring experiment NAME's results into the "
              "workspace: the params it changed (set in params.yaml in place), its dvc.lock, "
              "reports and data; the workspace's own results are committed first when no "
              "commit holds them. Names: msaflow exp show",
              file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return experiments.apply(args[1])


def _main(argv: list[str] | None = None) -> int:
    environment.apply()  # before any flow (and Prefect) is imported
    parser = build_parser()
    # `repro`/`exp` pass every further argument to dvc, options included (`exp -S a=b`):
    # argparse's REMAINDER alone does not take an option as the first one.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("repro", "exp"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command in ("repro", "exp"):
            from runtime.dvc import repro

            dvc_args = [*extra, *args.dvc_args]
            if args.command == "exp" and dvc_args[:1] in (["show"], ["apply"]):
                return _experiments(dvc_args)
            command = ("repro",) if args.command == "repro" else ("exp", "run")
            return repro(dvc_args, command)
        if args.command == "server":
            return _server(args.action)
        over = parse_assignments(getattr(args, "overrides", [])) or None
        if args.command == "retrain" and over:
            print("error: retrain runs `dvc repro`, which reads params.yaml as it is: -S "
                  "overrides would not apply; use `msaflow exp -S KEY=VALUE` (= `dvc exp "
                  "run -S`) for changed params, or edit params.yaml", file=sys.stderr)
            return 2
        params = _load(args, over)
        if args.command == "check":
            extra_s = f" with {len(over)} override(s)" if over else ""
            print(
                f"{args.params}{extra_s}: valid (dataset {params.dataset.name}, preset "
                f"{params.dataset.preset}, models "
                f"{', '.join(params.train.models)})"
            )
            return 0
        if getattr(args, "model", None) is not None and args.command != "predict" \
                and args.model not in params.models:
            raise ParamsError(f"{args.params}: models.{args.model}: no such model section")
        return _run(args, over)
    except ParamsError as err:
        print(f"error: {err}{_elsewhere(err)}", file=sys.stderr)
        return 2
    except (server.ServerError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a stage failed: one readable line; the flow log has the rest
        if os.environ.get("MSAFLOW_DEBUG"):
            raise
        print(f"error: {args.command} failed: {type(err).__name__}: {err}{_elsewhere(err)}",
              file=sys.stderr)
        return 1


def _elsewhere(err: BaseException) -> str:
    """For an artifact the workspace lacks: the experiment that made it, and how to bring it
    in ("" when none did, or for another error)."""
    if not isinstance(err, NotInWorkspace):
        return ""
    from runtime.experiments import hint

    found = hint(err.path)
    return f"\n  {found}" if found else ""


if __name__ == "__main__":
    sys.exit(main())
