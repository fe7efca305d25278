"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def one_torch_thread():
    """Tiny tensors: one torch thread is faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _prefect_console_on_current_stderr():
    """Point Prefect's console log handlers at this test's stderr.

    Prefect binds its rich console to the stream of the moment it configures logging; under
    pytest that is one test's capture file, closed once that test ends, and a later
    in-process flow run would then fail writing its first log line to it.
    """
    import logging
    import sys

    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import PrefectConsoleHandler

        loggers = [logging.getLogger()] + [
            lg for lg in logging.Logger.manager.loggerDict.values()
            if isinstance(lg, logging.Logger)
        ]
        for lg in loggers:
            for handler in lg.handlers:
                if isinstance(handler, PrefectConsoleHandler):
                    handler.console.file = sys.stderr
    yield
