"""What every flow shares: loading params, publishing artifacts, a quiet terminal."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from config.paths import Paths
from config.schema import Params
from tasks.params import load_params

PROJECT_PACKAGES = ("config", "models", "tasks", "runtime", "flows", "msaflow")


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


_FORK_GUARD: list[bool] = []


def _forget_prefect_exit_hooks() -> None:
    """In a forked child: drop the thread-exit hooks of Prefect's background services.

    Prefect resets its services in a forked child but leaves their hooks in the threading
    module's exit list; at the child's exit they run against services that do not exist
    there and fail, so a process forked after a flow ran (a DataLoader worker of the train
    stage, ``train.num_workers`` > 0) exits with status 1 and its parent stops."""
    hooks = getattr(threading, "_threading_atexits", None)
    if hooks:
        hooks[:] = [h for h in hooks if not type(getattr(getattr(h, "func", h), "__self__", None))
                    .__module__.startswith("prefect.")]


def guard_forks() -> None:
    """Register :func:`_forget_prefect_exit_hooks` for forked children (once a process)."""
    if not _FORK_GUARD and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_prefect_exit_hooks)
        _FORK_GUARD.append(True)


def load(
    params_path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
) -> tuple[Params, Paths]:
    """Validated params (params.yaml, then ``-S``-style ``overrides``) and their paths."""
    guard_forks()
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


def publish_link(key: str, path: Path, title: str) -> None:
    """Attach a link to a local file (the HTML report) to the current flow run (no-op
    outside a run)."""
    from prefect.artifacts import create_link_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    slug = "".join(c if c.isalnum() else "-" for c in key.lower()).strip("-")
    create_link_artifact(key=slug, link=path.resolve().as_uri(), link_text=title,
                         description=f"{title}: {path}")


def publish_artifacts(key: str, markdown: str, files: dict[str, str] | None = None) -> None:
    """A stage's summary table, then each of its ``files`` ({title: path}): a markdown file
    as its text, a PNG as a picture, an HTML page as a link (no-op outside a flow run)."""
    publish_markdown(f"{key}-summary", markdown)
    for title, file in (files or {}).items():
        path = Path(file)
        if not path.is_file():
            continue
        slug = f"{key}-{title}"
        if path.suffix == ".png":
            publish_image(slug, path, title)
        elif path.suffix == ".md":
            publish_markdown(slug, path.read_text(encoding="utf-8"), description=title)
        elif path.suffix == ".html":
            publish_link(slug, path, title)


def summary_markdown(title: str, summary: dict) -> str:
    """A two-column markdown table of a stage summary's scalar entries."""
    rows = [f"### {title}", "", "| key | value |", "| --- | --- |"]
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append(f"| {key} | {value} |")
    return "\n".join(rows) + "\n"
