"""Quiet, offline defaults for every process this project starts (a user's own settings
win: each is set only when absent). Applied by the CLI before anything imports Prefect,
and by ``flows.common`` for code that imports the flows directly."""

from __future__ import annotations

import os

DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
    # A plain `dvc repro` stage starts Prefect's temporary server; on a busy machine it can
    # take longer than Prefect's 20 s to answer, and the stage then failed for no reason of
    # its own ("Timed out while attempting to connect to ephemeral Prefect API server").
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # transformers draws a "Loading weights" bar for every model it loads (twice per seed in
    # robustness and predict); local weights load in well under a second
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def apply() -> None:
    """Set every default that the environment does not already set."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
