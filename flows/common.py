"""What every stage flow shares: loading params, publishing artifacts, a local server."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msaflow import environment
from msaflow.params import load_params
from msaflow.paths import Paths
from msaflow.schema import Params

# Quiet, offline defaults for Prefect runs started from this project (a user's own
# settings win: setdefault only).
environment.apply()

PROJECT_PACKAGES = ("msaflow", "tasks", "flows", "models")


def handled(exc: BaseException) -> bool:
    """An error the project raises with a complete message (a bad param, file, clip...): its
    traceback tells the user nothing the message does not."""
    return (type(exc).__module__.split(".")[0] in PROJECT_PACKAGES
            or isinstance(exc, FileNotFoundError))


class HandledErrorFilter(logging.Filter):
    """Terminal only: drop Prefect's "Task/Flow run ... exception" records (with traceback)
    for a handled error. The message still shows in Prefect's "Finished in state Failed(...)"
    line and the CLI's ``error:`` line; the traceback stays in the flow run's log on the
    server (its API handler sits on the run loggers, before this one), and
    ``MSAFLOW_DEBUG=1`` prints it here too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or os.environ.get("MSAFLOW_DEBUG"):
            return True
        exc = record.exc_info[1]
        return exc is None or not handled(exc)


class CompletedTaskFilter(logging.Filter):
    """Terminal only: drop a task run's "Finished in state Completed()" (one per clip of a
    mapped extraction: hundreds of lines saying nothing went wrong). Failures, the flow
    runs' lines and everything on the server stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "prefect.task_runs" and record.levelno == logging.INFO
                    and record.getMessage() == "Finished in state Completed()")


def quiet_terminal() -> None:
    """Put the terminal filters on Prefect's console handler (once)."""
    import prefect.main  # noqa: F401  (sets up Prefect's logging: the handlers exist after)

    for handler in logging.getLogger().handlers:
        if type(handler).__name__ != "PrefectConsoleHandler":
            continue
        for kind in (HandledErrorFilter, CompletedTaskFilter):
            if not any(isinstance(f, kind) for f in handler.filters):
                handler.addFilter(kind())


quiet_terminal()


def load(
    params_path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
) -> tuple[Params, Paths]:
    """Validated params (params.yaml, then ``-S``-style ``overrides``) and their paths."""
    params = load_params(params_path, overrides)
    return params, Paths.from_params(params)


def publish_markdown(key: str, markdown: str, description: str = "") -> None:
    """Attach a markdown artifact to the current flow run (no-op outside a run)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    slug = "".join(c if c.isalnum() else "-" for c in key.lower()).strip("-")
    create_markdown_artifact(key=slug, markdown=markdown, description=description)


def publish_image(key: str, png: str | Path, title: str, description: str = "") -> None:
    """Attach a PNG figure to the current flow run, embedded in a markdown artifact as a data
    URL (the UI shows it; no file server needed). No-op outside a run."""
    import base64

    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    publish_markdown(key, f"### {title}\n\n![{title}](data:image/png;base64,{data})\n",
                     description=description)


def summary_markdown(title: str, summary: dict) -> str:
    """A two-column markdown table of a stage summary's scalar entries."""
    rows = [f"### {title}", "", "| key | value |", "| --- | --- |"]
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append(f"| {key} | {value} |")
    return "\n".join(rows) + "\n"


SERVER_LOG_MAX_BYTES = 10 * 2**20


@contextlib.contextmanager
def prefect_server(start_timeout: float = 120.0) -> Iterator[str]:
    """Use the server Prefect is configured with (``PREFECT_API_URL`` in the environment, the
    active profile, or the flow run's own), else run one local Prefect server (API and UI)
    for the whole block; yields the API URL, exported in the environment for child
    processes (``dvc repro``'s stages) while the block runs.

    Each stage is its own process under ``dvc repro``; without a server each would start
    Prefect's temporary one (seconds each, and API only). One shared server also lets a
    person open its address in a browser and watch every stage's flow run while the
    pipeline runs. The server is ``prefect server start`` on a free local port with the
    user's Prefect database, so ``make ui`` shows the same runs later; its own output goes to
    ``<PREFECT_HOME>/msaflow-server.log``, not into the pipeline's.
    """
    from prefect.settings import PREFECT_API_URL

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    if configured := PREFECT_API_URL.value():
        os.environ["PREFECT_API_URL"] = configured
        try:
            yield configured
        finally:
            os.environ.pop("PREFECT_API_URL", None)
        return
    from prefect.settings import temporary_settings

    process, address, log = _start_server(start_timeout)
    os.environ["PREFECT_API_URL"] = f"{address}/api"
    print(f"Prefect server for this run: {address} (UI and API; its log: {log})")
    try:
        # Flow runs in this process too (`msaflow run`): Prefect read its settings at
        # import, before the variable existed, and would start its temporary server.
        with temporary_settings(updates={PREFECT_API_URL: f"{address}/api"}):
            yield f"{address}/api"
    finally:
        _drain_to_server()
        os.environ.pop("PREFECT_API_URL", None)
        _stop_server(process)


def _drain_to_server(timeout: float = 10.0) -> None:
    """Send this process's queued logs and events while the server still runs (Prefect
    would do it at exit, to a server gone by then: "Error logging to API")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


def _start_server(timeout: float) -> tuple[subprocess.Popen, str, Path]:
    """Start ``prefect server start`` on a free port and wait until its API answers."""
    import httpx
    from prefect.settings import get_current_settings

    log = Path(get_current_settings().home).expanduser() / "msaflow-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.is_file() and log.stat().st_size > SERVER_LOG_MAX_BYTES:
        log.replace(log.with_suffix(".log.1"))
    for _attempt in range(3):  # another process may take the free port before the server
        port = _free_port()
        address = f"http://127.0.0.1:{port}"
        with open(log, "a") as out:
            out.write(f"\n=== msaflow: prefect server start on {address} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            out.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(port), "--analytics-off"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C reaches the pipeline, which stops it
            )
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{address}/api/health", timeout=2).status_code == 200:
                    return process, address, log
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        if process.poll() is None:  # timed out while still running
            _stop_server(process)
            why = f"did not answer within {timeout:.0f} s"
            break
        why = f"exited with code {process.returncode}"
    tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
    raise RuntimeError(
        f"the local Prefect server {why} (its log: {log}):\n"
        f"{tail}\nStart one yourself (`make ui`) and export PREFECT_API_URL="
        "http://127.0.0.1:4200/api, or set PREFECT_API_URL to a running server."
    )


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_server(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGINT (the server's Ctrl-C: it finishes writing what it received), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_cli(command: str) -> None:
    """``python -m flows.<x> ARGS`` = ``msaflow <command> ARGS``: the same parser, one CLI."""
    import runpy
    import sys

    sys.argv = ["msaflow", command, *sys.argv[1:]]
    runpy.run_module("msaflow.cli", run_name="__main__")
