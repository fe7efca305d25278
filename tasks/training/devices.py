"""Which device a stage runs on (``train.accelerator``), without importing Lightning.

Evaluate, robustness and predict only need a torch device name: importing Lightning for it
cost every such stage 2.4 s of start-up (13 of the demo's stages).
"""

from __future__ import annotations

import torch

from msaflow.errors import ParamsError


def resolve_accelerator(choice: str) -> str:
    """'auto' → 'gpu' when CUDA is present, else 'cpu'; an explicit 'gpu' must exist."""
    if choice == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if choice == "gpu" and not torch.cuda.is_available():
        raise ParamsError("train.accelerator: 'gpu' requested but no CUDA device is visible")
    return choice


def torch_device(choice: str) -> str:
    """The torch device of ``train.accelerator``: ``cuda`` or ``cpu``."""
    return "cuda" if resolve_accelerator(choice) == "gpu" else "cpu"
