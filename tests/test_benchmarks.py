"""benchmarks/gpu_check.py on a machine without a GPU: it says so at once and checks
nothing (status 2, which is not success: a skipped GPU check never counts as passed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run the check")
def test_without_a_gpu_it_exits_at_once_saying_so() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "no CUDA GPU is visible" in run.stdout and "nothing was checked" in run.stdout
    assert "Traceback" not in run.stderr
