"""Fixtures shared by several test modules, and the session's own Prefect home and server.

The session gets a Prefect home of its own (no user's database, profile or server is
touched) and, in it, the shared local server msaflow starts on first use: started here,
before any test module imports Prefect, so flows run in this process and every msaflow
command a test starts report to it (they find it in the session's PREFECT_HOME); stopped at
the end of the session.
"""

from __future__ import annotations

import atexit
import os
import tempfile

import pytest
import torch

from runtime import server

_HOME = tempfile.mkdtemp(prefix="msaflow-tests-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILE", None)
_SERVER, _ = server.start()  # not waited for: it starts while the tests are collected
os.environ["PREFECT_API_URL"] = _SERVER.api_url
atexit.register(server.stop)  # also when no test ran (--collect-only, an interrupted run)


@pytest.fixture(scope="session", autouse=True)
def _shared_prefect_server():
    """Every test runs with the session's server answering; it stops after the last one.
    Flows run in this process, so a process forked from it (a DataLoader worker) must
    forget Prefect's exit hooks, as the stages' processes do (flows.common.guard_forks)."""
    from flows.common import guard_forks

    guard_forks()
    server.wait(_SERVER)
    yield _SERVER
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):  # what this process still has to send
        worker.drain_all(timeout=10)
    server.stop()


@pytest.fixture()
def one_torch_thread():
    """Tiny tensors: one torch thread is faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _prefect_console_on_current_stderr():
    """Point Prefect's console log handlers at this test's stderr, then at the real one.

    Prefect binds its rich console to the stream of the moment it configures logging; under
    pytest that is one test's capture file, closed once that test ends, and a later
    in-process flow run would then fail writing its first log line to it. After the test
    the handlers get the process's own stderr: Prefect's temporary server logs its stop at
    interpreter exit, after pytest closed every capture.
    """
    import sys

    _point_prefect_console(sys.stderr)
    yield
    _point_prefect_console(sys.__stderr__)


def _point_prefect_console(stream) -> None:
    import logging
    import sys

    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.console.file = stream


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory):
    """The DAG run once on a tiny demo in a git copy of the repo (tests/e2e.py); tests
    that change it work in a copy: ``tests.e2e.clone(tiny_demo, tmp_path / "repo")``."""
    from tests import e2e

    return e2e.build(tmp_path_factory.mktemp("tiny_demo"))
