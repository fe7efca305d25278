"""What a killed training needs to resume to the bytes an uninterrupted run gives.

Lightning's ``last.ckpt`` holds the weights, the optimiser, the schedule, the loops and the
callbacks' states, but not the random number generators: a resumed run would draw other
dropout masks, another batch order and other contrastive pairs than the run it continues.
:class:`RandomStates` keeps them in ``last.ckpt`` (Python's, NumPy's, torch's on every
device, and the train loader's own generator) and puts them back on resume. The model's
state that lives across epochs but not in its ``state_dict`` (DashFusion's retrieval table
and feature bank) goes through ``MSAModel.training_state`` (tasks/training/module.py).

DVCLive appended the curves of the epoch the kill cut short; :func:`cut_curves` takes every
row after the resumed step back out, so the curves hold each step once.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RandomStates(Callback):
    """Saves and restores every random generator training draws from (see the module)."""

    def __init__(self, loader_generator: torch.Generator) -> None:
        self.loader_generator = loader_generator

    @property
    def state_key(self) -> str:
        return "RandomStates"

    def state_dict(self) -> dict[str, Any]:
        # plain containers and tensors only: Lightning reads last.ckpt with weights_only
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                      int(has_gauss), float(gauss)),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loader": self.loader_generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        self.loader_generator.set_state(state_dict["loader"])


def resumed_step(last: Path) -> int:
    """The global step ``last.ckpt`` was saved at."""
    ckpt = torch.load(last, map_location="cpu", weights_only=False)  # Lightning's own file
    return int(ckpt["global_step"])


def cut_curves(live_dir: Path, step: int) -> int:
    """Drop the rows logged after ``step`` from DVCLive's curves in ``live_dir``; how many."""
    dropped = 0
    for tsv in sorted((live_dir / "plots").rglob("*.tsv")) if live_dir.is_dir() else []:
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        at = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(r[at]) <= step]
        dropped += len(rows) - len(kept)
        with open(tsv, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)
    return dropped
