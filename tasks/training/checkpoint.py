"""The checkpoint format (docs/contracts.md "train"): save, load, and the forward pass.

A ``seed<k>.ckpt`` is a plain dict saved with ``torch.save``: ``format``, ``model`` (the
registry name), ``config`` (its config dataclass as a dict), ``spec`` (the DataSpec of the
cache it was trained on), ``variant``, ``params`` (every param of the run), ``params_hash``,
``trainer`` (its trainer settings), ``state_dict`` (the bare model's weights, CPU), ``seed``,
``epoch`` (the best one), ``epochs_run``, ``selection`` and ``valid`` (that epoch's valid
metrics). It loads with ``weights_only=True``: no pickled code. Evaluate and predict both go
through :func:`load` and :func:`forward`, so they see a model exactly as trained.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from config.paths import Paths
from models import registry
from models.base import DataSpec, MSAModel
from tasks.formats.dataset import H5Dataset, collate
from tasks.io import atomic_path

FORMAT = 1
EVAL_BATCH = 64
REQUIRED = ("model", "config", "spec", "state_dict")


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically, byte-reproducibly."""
    # Through a file handle: given a path, torch names the archive's inner folder after it,
    # and the random temporary name would make every checkpoint's bytes (its DVC hash) differ.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is not one of ours; the message says what to do."""


def read(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict (tensors on the CPU), checked to be one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (run the `train` stage)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch's reader says it its way
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it is truncated or "
            "not a file `msaflow train` wrote: bring the trained one back with `dvc checkout` "
            "(or `dvc pull`), or retrain with `msaflow train <model>`") from None
    if not isinstance(ckpt, dict) or (missing := [k for k in REQUIRED if k not in ckpt]):
        raise CheckpointError(f"{path}: not a msaflow checkpoint (missing "
                              f"{missing if isinstance(ckpt, dict) else list(REQUIRED)})")
    return ckpt


def seed_paths(paths: Paths, model_name: str, seeds: list[int]) -> list[Path]:
    """Every seed's checkpoint of ``model_name``, all present (else the error names them)."""
    ckpts = [paths.checkpoint(model_name, s) for s in seeds]
    missing = [str(p) for p in ckpts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{model_name}: checkpoint(s) missing {missing}; run `train`")
    return ckpts


def load(path: str | Path) -> tuple[MSAModel, dict[str, Any]]:
    """Rebuild a trained model (eval mode, CPU) from a ``seed<k>.ckpt`` via the registry."""
    ckpt = read(path)
    spec = DataSpec(**ckpt["spec"])
    config = registry.build_config(ckpt["model"], ckpt["config"])
    model = registry.build(ckpt["model"], spec, config)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def class_names(ckpt: dict[str, Any]) -> list[str]:
    """The class names a checkpoint's model predicts (``class<k>`` when unnamed)."""
    spec = ckpt["spec"]
    names = list(spec.get("extra", {}).get("class_names") or [])
    if len(names) != spec["num_classes"]:
        names = [f"class{c}" for c in range(spec["num_classes"])]
    return names


def batches(dataset: H5Dataset) -> list[dict[str, Any]]:
    """A split's batches as ``forward`` reads them, collated once: for scoring one split
    many times (the robustness stage's 60-odd conditions) without collating it each time."""
    return list(DataLoader(dataset, batch_size=EVAL_BATCH, shuffle=False, collate_fn=collate))


@torch.no_grad()
def forward(
    model: MSAModel, data: H5Dataset | list[dict[str, Any]], device: str = "cpu",
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Eval-mode predictions of a split: (clip ids, targets, (N,) preds or (N, C) logits).

    ``data``: the split, or its ``batches``. ``transform`` changes each batch (a copy)
    before the model sees it (the robustness stage's missing and noisy modalities); batches
    come in the split's order, 64 at a time.
    """
    model.eval().to(device)
    ids: list[str] = []
    targets, preds = [], []
    classification = model.spec.task == "classification"
    loader = data if isinstance(data, list) else batches(data)
    for batch in loader:
        if transform is not None:
            batch = transform(batch)
        ids.extend(batch["id"])
        tensors = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        out = model(tensors)["pred"].float().cpu()
        preds.append(out)
        targets.append(batch["label_class"] if classification else batch["label"])
    if not ids:
        width = (0, model.spec.num_classes) if classification else (0,)
        return ids, np.zeros(0), np.zeros(width)
    return ids, torch.cat(targets).numpy(), torch.cat(preds).numpy()
