"""What a person sees on the terminal: one clear line per handled problem, no traceback."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from config.errors import ParamsError
from flows.common import CompletedTaskFilter, HandledErrorFilter, handled
from tasks.sources.mmsa_pkl import PickleFormatError

ROOT = Path(__file__).resolve().parents[2]


def _record(exc: BaseException | None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1,
                             "Task run failed with exception", None, info)


def test_handled_errors_lose_their_traceback_on_the_terminal_only(monkeypatch) -> None:
    monkeypatch.delenv("MSAFLOW_DEBUG", raising=False)
    quiet = HandledErrorFilter()
    assert handled(ParamsError("x")) and handled(PickleFormatError("x"))
    assert handled(FileNotFoundError("x"))
    assert not quiet.filter(_record(PickleFormatError("bad pickle")))
    # A bug's traceback is shown, and so is every record without an exception.
    assert quiet.filter(_record(ZeroDivisionError("bug")))
    assert quiet.filter(_record(None))
    monkeypatch.setenv("MSAFLOW_DEBUG", "1")
    assert quiet.filter(_record(PickleFormatError("bad pickle")))


def test_completed_task_runs_are_not_listed_on_the_terminal() -> None:
    quiet = CompletedTaskFilter()

    def record(name: str, level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)

    assert not quiet.filter(record("prefect.task_runs", logging.INFO,
                                   "Finished in state Completed()"))
    assert quiet.filter(record("prefect.task_runs", logging.ERROR,
                               "Finished in state Failed('...')"))
    assert quiet.filter(record("prefect.flow_runs", logging.INFO,
                               "Finished in state Completed()"))
    assert quiet.filter(record("prefect.task_runs", logging.INFO, "[late_fusion seed 0] ..."))


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.slow  # a CLI run with its temporary Prefect server
def test_a_refused_pickle_is_one_clear_error_without_traceback(tmp_path: Path) -> None:
    pkl = tmp_path / "unaligned_50.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump({"train": {"id": _Evil()}, "valid": {}, "test": {}}, fh)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MSAFLOW_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "msaflow.cli", "--params", str(ROOT / "params.yaml"),
         "ingest", "-S", "dataset.name=evil",
         "-S", "dataset.source=mmsa_pkl", "-S", f"dataset.root={pkl}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors == [f"error: ingest failed: PickleFormatError: {pkl}: not a readable MMSA "
                      "pickle: refusing to load posix.getcwd: only numpy arrays and builtin "
                      "containers are allowed (set dataset.pkl.trusted: true only for a file "
                      "you trust)"], out
