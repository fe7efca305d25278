"""Stage `robustness`: a trained model, checkpoints fixed, under missing and noisy modalities.

The field's protocols in one stage, on ``robustness.splits`` (valid and test), for every seed:

- **absent**: each modality, and each pair, removed entirely — as a video without that
  stream arrives (and as ``predict`` scores one): the text keeps only its [CLS] [SEP]
  tokens and no word, audio and vision keep no frame;
- **missing**: at rate ``r`` (``robustness.rates``) every real text token but [CLS]/[SEP]
  becomes [UNK] and every real word, audio and vision row is zeroed, each independently
  with probability ``r`` (MMSA's TFR-Net protocol; lengths stay, so FASCA-Net's word
  alignment still has its frames), averaged over ``robustness.draws`` draws;
- **noise**: Gaussian noise of std ``level`` × each feature's train std added to every
  real audio and vision frame (MultiBench), ``robustness.levels``, over the same draws.

Draws are seeded (``robustness.seed``, the condition, the draw and the split), so the same
params give the same numbers. Rate 0 and level 0 are the clean input: evaluate's metrics.

Writes ``reports/<ds>/<model>/robustness.json`` (every condition × the task's metrics, mean
and std over seeds × draws, and the summary: relative robustness = the mean of the robustness
metric (``tasks.metrics.robustness_metric``, named under ``headline``) over the rate / level
grid, as MultiBench's area under the curve) and ``clip_conditions.csv`` (each clip's
prediction clean and with each modality absent, mean over seeds: the report's error analysis).
The `report` stage draws the curves and adds effective robustness against
``robustness.reference`` (late fusion): the difference of the mean drops from clean.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from config.paths import Paths
from config.schema import Params
from tasks.formats.dataset import H5Dataset
from tasks.io import atomic_path, write_json_atomic
from tasks.metrics import compute_metrics, robustness_metric, scheme_for
from tasks.training import checkpoint
from tasks.training.devices import torch_device

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
_STREAMS = {"text": ("words",), "audio": ("audio",), "vision": ("vision",)}


@dataclass(frozen=True)
class Condition:
    """One way of degrading the input: ``kind`` absent | missing | noise."""

    kind: str
    modalities: tuple[str, ...] = MODALITIES
    level: float = 0.0  # missing rate, or noise std in train stds

    @property
    def name(self) -> str:
        if self.kind == "absent":
            return "absent:" + "+".join(self.modalities)
        return f"{self.kind}:{self.level:g}"


def conditions(params: Params) -> list[Condition]:
    """Every condition the params ask for, absent ones first."""
    out = [Condition("absent", tuple(c)) for n in (1, 2, 3)
           for c in itertools.combinations(MODALITIES, n)]
    out += [Condition("missing", MODALITIES, float(r)) for r in params.robustness.rates]
    out += [Condition("noise", ("audio", "vision"), float(v)) for v in params.robustness.levels]
    return out




def _seed(base: int, *parts: Any) -> int:
    return (base * 1_000_003 + zlib.crc32(repr(parts).encode())) % (2**63)


def corrupt(
    batch: dict[str, Any], cond: Condition, gen: torch.Generator, unk_id: int | None,
    noise_std: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """A copy of ``batch`` under ``cond`` (see the module docstring); masks True on real.
    ``unk_id`` None: token ids are left as they are (for a model that does not read them)."""
    out = dict(batch)
    if cond.kind == "absent":
        for m in cond.modalities:
            for s in _STREAMS[m]:
                out[s] = torch.zeros_like(batch[s])
                out[f"{s}_mask"] = torch.zeros_like(batch[f"{s}_mask"])
            if m == "text":  # an empty transcript: [CLS] [SEP]
                ids, mask = batch["text_ids"].clone(), batch["text_mask"]
                last = mask.long().sum(1).clamp(min=1) - 1
                sep = ids.gather(1, last[:, None])[:, 0]
                ids[:, 1:] = 0
                ids[:, 1] = sep
                out["text_ids"] = ids
                first_two = torch.arange(ids.shape[1])[None, :] < 2
                out["text_mask"] = first_two.expand_as(mask).to(mask.dtype).clone()
        return out
    if cond.level <= 0:
        return out
    if cond.kind == "missing":
        ids, mask = batch["text_ids"].clone(), batch["text_mask"]
        n = mask.long().sum(1, keepdim=True)
        pos = torch.arange(ids.shape[1])[None, :]
        inner = mask & (pos > 0) & (pos < n - 1)  # not [CLS], not [SEP]
        hit = (torch.rand(ids.shape, generator=gen) < cond.level) & inner
        if unk_id is not None:
            out["text_ids"] = ids.masked_fill(hit, unk_id)
        for s in ("words", "audio", "vision"):
            x, real = batch[s], batch[f"{s}_mask"]
            drop = (torch.rand(real.shape, generator=gen) < cond.level) & real
            out[s] = x.masked_fill(drop[..., None], 0.0)
        return out
    for s in ("audio", "vision"):  # noise
        x, real = batch[s], batch[f"{s}_mask"]
        noise = torch.randn(x.shape, generator=gen) * (cond.level * noise_std[s])
        out[s] = x + noise * real[..., None]
    return out


def _unk_id(encoder: str) -> int:
    """The [UNK] id of the tokenizer the checkpoint's token ids belong to."""
    from models.text_encoders import load_tokenizer

    try:
        tokenizer = load_tokenizer(encoder)
    except OSError as err:
        raise FileNotFoundError(
            f"tokenizer {encoder!r} (the cache's text_encoder) is not available offline, and "
            f"its [UNK] id is needed to mask tokens: {err}"
        ) from None
    if tokenizer.unk_token_id is None:
        raise ValueError(f"tokenizer {encoder!r} has no [UNK] token to mask tokens with")
    return int(tokenizer.unk_token_id)


def _noise_std(h5: Path, normalize: bool, dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """Each audio/vision feature's train std in the space the model sees (1 once z-scored)."""
    import h5py

    if normalize:
        return {s: torch.ones(dims[s]) for s in ("audio", "vision")}
    with h5py.File(h5, "r") as f:
        return {s: torch.from_numpy(f[f"norm/{s}/std"][()].astype(np.float32))
                for s in ("audio", "vision")}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    arr = np.array([v for v in values if v is not None and not math.isnan(v)], np.float64)
    if not len(arr):
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def evaluate_robustness(params: Params, paths: Paths, model_name: str) -> dict[str, Any]:
    """Score every seed of ``model_name`` under every condition; write the model's reports."""
    cfg = params.robustness
    seeds = list(params.train.seeds)
    ckpts = checkpoint.seed_paths(paths, model_name, seeds)
    device = torch_device(params.train.accelerator)
    scheme = scheme_for(tuple(params.dataset.label_range))
    conds = conditions(params)
    # (condition name, split) → one metrics dict per seed × draw
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    # (condition, split) → each seed's per-clip outputs, for the clean input and each
    # modality absent alone: what the report's error analysis shows per clip
    per_clip: dict[tuple[str, str], list[tuple[list[str], np.ndarray]]] = {}
    kept = {"missing:0", *(f"absent:{m}" for m in MODALITIES)}
    names: list[str] = []
    # each split is read and collated once for every seed and condition (when it is held in
    # memory anyway; a split too large for that is read anew, lazily, each time)
    held: dict[tuple[Path, str, bool], H5Dataset | list[dict[str, Any]]] = {}
    task, started = "regression", time.perf_counter()
    for path in ckpts:
        model, ckpt = checkpoint.load(path)
        task = model.spec.task
        names = checkpoint.class_names(ckpt)
        h5 = paths.h5(ckpt["variant"])
        normalize = bool(ckpt["params"]["cache"]["normalize"])
        # [UNK] replaces masked tokens of a model that reads them (the others see the
        # words' rows, zeroed): its tokenizer must be there; the others need none.
        unk = _unk_id(model.spec.text_encoder) if model.reads_tokens else None
        std = _noise_std(h5, normalize, model.spec.dims)
        for split in cfg.splits:
            if (h5, split, normalize) not in held:
                data = H5Dataset(h5, split, normalize=normalize)
                held[h5, split, normalize] = checkpoint.batches(data) if data.preloaded else data
            data = held[h5, split, normalize]
            clean: dict[str, float] | None = None
            for cond in conds:
                draws = 1 if cond.kind == "absent" or cond.level <= 0 else cfg.draws
                for draw in range(draws):
                    if cond.kind != "absent" and cond.level <= 0 and clean is not None:
                        metrics = clean  # rate / level 0 is the clean input
                    else:
                        gen = torch.Generator().manual_seed(
                            _seed(cfg.seed, cond.name, draw, split))
                        transform = functools.partial(
                            corrupt, cond=cond, gen=gen, unk_id=unk, noise_std=std)
                        ids, y, out = checkpoint.forward(model, data, device, transform)
                        metrics = compute_metrics(task, scheme, names, y, out)
                        if cond.kind != "absent" and cond.level <= 0:
                            clean = metrics
                        if cond.name in kept:
                            per_clip.setdefault((cond.name, split), []).append((ids, out))
                    results.setdefault((cond.name, split), []).append(metrics)
    for data in held.values():
        if isinstance(data, H5Dataset):
            data.close()
    seconds = time.perf_counter() - started
    key = robustness_metric(task, scheme)
    doc: dict[str, Any] = {"model": model_name, "task": task, "headline": key,
                           "seeds": len(seeds), "draws": cfg.draws, "conditions": {}}
    for (name, split), runs in results.items():
        cell = doc["conditions"].setdefault(name, {})
        cell[split] = {}
        for metric in runs[0]:
            mean, std = _mean_std([r.get(metric) for r in runs])
            cell[split][metric] = mean
            cell[split][f"{metric}_std"] = std
    doc["summary"] = _summary(doc, params, key)
    write_json_atomic(paths.robustness(model_name), doc)
    write_clip_outputs(per_clip, task, names, paths.clip_conditions(model_name))
    print(f"[{model_name}] robustness: {len(conds)} conditions × {len(cfg.splits)} splits × "
          f"{len(seeds)} seeds in {seconds:.1f} s; " + ", ".join(
              f"{k} {v:.4f}" for k, v in doc["summary"].items() if isinstance(v, float)))
    return {"model": model_name, "seconds": round(seconds, 2), **doc["summary"]}


def write_clip_outputs(per_clip: dict[tuple[str, str], list[tuple[list[str], np.ndarray]]],
                       task: str, class_names: list[str], path: Path) -> Path:
    """``clip_conditions.csv``: per split, clip and condition (clean, each modality absent),
    the prediction (mean over seeds; classification: the class of the mean probabilities,
    and each class's probability)."""
    rows: list[dict[str, Any]] = []
    for (cond, split), runs in sorted(per_clip.items()):
        ids = runs[0][0]
        outs = np.stack([out for _, out in runs])  # (seeds, N[, C])
        name = "clean" if cond == "missing:0" else cond
        if task == "regression":
            for clip, value in zip(ids, outs.mean(0), strict=True):
                rows.append({"split": split, "clip_id": clip, "condition": name,
                             "prediction": float(value)})
            continue
        probs = torch.softmax(torch.from_numpy(outs), dim=-1).numpy().mean(0)  # (N, C)
        for clip, p in zip(ids, probs, strict=True):
            rows.append({"split": split, "clip_id": clip, "condition": name,
                         "prediction": class_names[int(p.argmax())],
                         **{f"prob_{c}": float(v) for c, v in zip(class_names, p, strict=True)}})
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
    return path


def _summary(doc: dict[str, Any], params: Params, key: str) -> dict[str, Any]:
    """Clean, absent and robustness figures of the robustness metric on the last split."""
    split = "test" if "test" in params.robustness.splits else params.robustness.splits[-1]
    conds = doc["conditions"]

    def value(name: str) -> float | None:
        return conds.get(name, {}).get(split, {}).get(key)

    cfg = params.robustness
    out: dict[str, Any] = {"split": split, "metric": key}
    out["clean"] = value(f"missing:{0.0:g}") if 0.0 in cfg.rates else None
    for m in MODALITIES:
        out[f"absent_{m}"] = value(f"absent:{m}")
    out["absent_all"] = value("absent:" + "+".join(MODALITIES))
    for kind, grid in (("missing", cfg.rates), ("noise", cfg.levels)):
        curve = [value(f"{kind}:{float(v):g}") for v in grid]
        out[f"relative_{kind}"] = float(np.mean(curve)) if None not in curve else None
    return out




__all__ = [
    "Condition",
    "conditions",
    "corrupt",
    "evaluate_robustness",
]
