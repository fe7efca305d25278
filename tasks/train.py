"""Stage `train`: one registered model, one Lightning run per seed (docs/contracts.md "train").

Each seed writes ``data/checkpoints/<ds>/<model>/seed<k>.ckpt`` (the BEST validation epoch,
with everything `evaluate` and `predict` need to rebuild the model) and DVCLive curves under
``reports/<ds>/<model>/train/seed<k>/``. A killed run resumes from Lightning's ``last.ckpt``
in ``work/seed<k>/``; a seed whose checkpoint exists with the same params hash is skipped.
Model selection uses the validation split only; the test split is never opened here.

A model's settings stack up as ``train.*`` < its preset (``models.<name>.preset``; ``auto`` =
the model's entry for ``dataset.preset``) < the keys written in ``models.<name>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from models import registry
from models.base import DataSpec, MSAModel
from msaflow import presets as dataset_presets
from msaflow.io import atomic_path, text_digest
from msaflow.params import Params, ParamsError
from msaflow.paths import Paths
from tasks.dataset import CacheFormatError, H5Dataset, collate, read_spec
from tasks.metrics import (
    classification_metrics,
    regression_metrics,
    scheme_for,
    selection_metric,
)

CKPT_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """The trainer keys of one ``models.<name>`` section over its preset and ``train.*``."""

    variant: str
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    weight_decay: float
    warmup_epochs: int = 0
    preset: str | None = None  # the model preset applied (None: none)


# key → (type, lower bound, bound inclusive?) for the numeric trainer keys
_NUMERIC = {
    "lr": (float, 0.0, False),
    "batch_size": (int, 1, True),
    "max_epochs": (int, 1, True),
    "patience": (int, 1, True),
    "weight_decay": (float, 0.0, True),
    "warmup_epochs": (int, 0, True),
}


# Values of ``models.<name>.preset`` that apply no preset.
NO_PRESET = (None, "none")


def model_section(params: Params, model_name: str) -> tuple[dict[str, Any], str | None]:
    """``models.<name>`` over its preset's keys, and the preset's name (None: no preset)."""
    where = f"models.{model_name}"
    raw = params.model_params(model_name)
    choice = raw.pop("preset", dataset_presets.AUTO)
    cls, _ = registry.lookup(model_name)
    available: dict[str, dict[str, Any]] = getattr(cls, "presets", {}) or {}
    if choice == dataset_presets.AUTO:
        name = dataset_presets.model_preset(params.dataset.preset)
        name = name if name in available else None  # no entry for this dataset: none
    elif choice in NO_PRESET:
        name = None
    elif not isinstance(choice, str):
        raise ParamsError(f"{where}.preset: expected a preset name, auto or none, got {choice!r}")
    elif choice not in available:
        raise ParamsError(
            f"{where}.preset: unknown preset {choice!r}; expected auto, none or one of "
            f"{sorted(available)}"
        )
    else:
        name = choice
    if name is None:
        return raw, None
    return {**available[name], **raw}, name


def trainer_settings(
    params: Params,
    model_name: str,
    raw: dict[str, Any],
    preset: str | None = None,
    from_preset: frozenset[str] = frozenset(),
) -> TrainerSettings:
    """Validate a model's trainer keys (ParamsError names ``models.<name>.<key>``).

    ``from_preset`` names the keys whose value came from ``preset``, so an error says so.
    """
    where = f"models.{model_name}"
    t = params.train

    def origin(key: str) -> str:
        if key not in from_preset:
            return ""
        return f" (from preset {preset!r}; set {where}.{key} to override)"

    default_variant = "unaligned" if "unaligned" in params.cache.variants else None
    values: dict[str, Any] = {
        "variant": default_variant or params.cache.variants[0],
        "lr": t.lr,
        "batch_size": t.batch_size,
        "max_epochs": t.max_epochs,
        "patience": t.patience,
        "weight_decay": t.weight_decay,
        "warmup_epochs": 0,
        "preset": preset,
    }
    for key, value in raw.items():
        if key in _NUMERIC:
            kind, low, inclusive = _NUMERIC[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            ok_type = isinstance(value, kind) and not isinstance(value, bool)
            if not ok_type or not (value >= low if inclusive else value > low):
                bound = f">= {low}" if inclusive else f"> {low}"
                raise ParamsError(
                    f"{where}.{key}: expected {kind.__name__} {bound}, got {value!r}"
                    + origin(key)
                )
        elif key == "variant":
            if value not in params.cache.variants:
                raise ParamsError(
                    f"{where}.variant: {value!r} is not cached "
                    f"(cache.variants = {list(params.cache.variants)})" + origin(key)
                )
        elif key == "preset":
            raise ParamsError(f"{where}.preset: resolve it with model_section() first")
        values[key] = value
    if values["warmup_epochs"] >= values["max_epochs"]:
        raise ParamsError(
            f"{where}.warmup_epochs: {values['warmup_epochs']} must be < max_epochs "
            f"({values['max_epochs']})" + origin("warmup_epochs") + origin("max_epochs")
        )
    return TrainerSettings(**values)


def model_config(model_name: str, arch: dict[str, Any]) -> Any:
    """The validated config dataclass of a model's architecture keys (preset included)."""
    try:
        return registry.build_config(model_name, arch)
    except ParamsError:
        raise
    except (TypeError, ValueError) as err:  # __post_init__ checks say "<key>: ..."
        raise ParamsError(f"models.{model_name}.{err}") from None


def resolve_model(params: Params, model_name: str) -> tuple[TrainerSettings, Any]:
    """A model's trainer settings and config: train.* < its preset < ``models.<name>``."""
    if model_name not in params.models:
        raise ParamsError(f"models.{model_name}: no such model section in params")
    section, preset = model_section(params, model_name)
    written = set(params.model_params(model_name))
    from_preset = frozenset(k for k in section if k not in written)
    trainer_raw, arch = registry.split_params(section)
    settings = trainer_settings(params, model_name, trainer_raw, preset, from_preset)
    return settings, model_config(model_name, arch)


def balanced_class_weights(
    labels: np.ndarray, class_names: list[str], source: str
) -> list[float]:
    """Inverse class frequency of ``labels`` (-1 skipped), mean 1 over the classes present."""
    # A class absent from ``labels`` gets weight 0 (it cannot be learnt) and a warning.
    n = len(class_names)
    known = np.asarray(labels, dtype=np.int64)
    known = known[known >= 0]
    if known.size == 0:
        raise ValueError(f"{source}: no known label_class; train.class_weights: balanced "
                         "needs class labels in the train split")
    if known.max() >= n:
        raise CacheFormatError(
            f"{source}: label_class {int(known.max())} outside the {n} classes {class_names}"
        )
    counts = np.bincount(known, minlength=n)
    present = counts > 0
    weights = np.zeros(n)
    weights[present] = 1.0 / counts[present]
    weights[present] *= present.sum() / weights[present].sum()  # mean 1 over present classes
    if not present.all():
        absent = [class_names[c] for c in np.flatnonzero(~present)]
        warnings.warn(
            f"{source}: train.class_weights: balanced: no train clip of class(es) {absent}; "
            "their weight is 0",
            stacklevel=2,
        )
    return [float(w) for w in weights]


def class_weights(params: Params, h5: Path, spec: DataSpec) -> list[float] | None:
    """``train.class_weights`` for this cache: None, train-split balanced, or the list."""
    choice = params.train.class_weights
    if choice == "none":
        return None
    if spec.task != "classification":
        raise ParamsError(
            f"train.class_weights: {choice!r} needs a classification cache; {h5} holds "
            f"task {spec.task!r}"
        )
    names = list(spec.extra.get("class_names") or [])
    if len(names) != spec.num_classes:
        names = [f"class{c}" for c in range(spec.num_classes)]
    if choice == "balanced":
        with h5py.File(h5, "r") as f:
            if "train/label_class" not in f:
                raise CacheFormatError(f"{h5}: train/label_class is missing")
            labels = f["train/label_class"][()]
        return balanced_class_weights(labels, names, f"{h5} train split")
    if len(choice) != spec.num_classes:
        raise ParamsError(
            f"train.class_weights: expected {spec.num_classes} weights, one per class of "
            f"{h5} ({names}), got {len(choice)}: {list(choice)}"
        )
    return [float(w) for w in choice]


def resolve_accelerator(choice: str) -> str:
    """'auto' → 'gpu' when CUDA is present, else 'cpu'; an explicit 'gpu' must exist."""
    if choice == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if choice == "gpu" and not torch.cuda.is_available():
        raise ParamsError("train.accelerator: 'gpu' requested but no CUDA device is visible")
    return choice


def warmup_linear_decay(warmup_steps: int, total_steps: int):
    """LambdaLR factor: linear warm-up to 1 over ``warmup_steps``, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def compute_metrics(
    task: str, scheme: str, class_names: list[str], y_true: np.ndarray, pred: np.ndarray
) -> dict[str, float]:
    """The task's metrics as floats (the list of skipped AUC classes is dropped)."""
    if task == "regression":
        keep = ~np.isnan(y_true)
        return regression_metrics(y_true[keep], pred[keep], scheme=scheme)
    keep = y_true >= 0
    m = classification_metrics(y_true[keep], pred[keep], class_names)
    return {k: v for k, v in m.items() if isinstance(v, float)}


class MSAModule(L.LightningModule):
    """Wraps any registered MSAModel: shared step, metrics, AdamW + warm-up/decay schedule."""

    def __init__(
        self,
        model: MSAModel,
        *,
        lr: float,
        weight_decay: float,
        warmup_epochs: int = 0,
        scheme: str = "mosi",
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.scheme = scheme
        self.verbose = verbose
        self.task = model.spec.task
        self.class_names = list(model.spec.extra.get("class_names") or [])
        if self.task == "classification" and len(self.class_names) != model.spec.num_classes:
            self.class_names = [f"class{c}" for c in range(model.spec.num_classes)]
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._epoch_start = 0.0
        self._train_loss: list[float] = []
        self.last_metrics: dict[str, dict[str, float]] = {}

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def _target(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["label"] if self.task == "regression" else batch["label_class"]

    def _shared_step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        out = self.model(batch)
        loss, parts = self.model.loss(batch, out)
        bs = len(batch["label"])
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=bs)
        for name, value in parts.items():
            if name != "task":
                self.log(
                    f"{split}/loss_{name}", value, on_step=False, on_epoch=True, batch_size=bs
                )
        if split == "train":
            self._train_loss.append(float(loss.detach()))
        else:
            self._outputs.setdefault(split, []).append(
                (self._target(batch).detach().cpu(), out["pred"].detach().float().cpu())
            )
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "valid")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _epoch_metrics(self, split: str) -> None:
        outputs = self._outputs.pop(split, [])
        if not outputs:
            return
        y = torch.cat([o[0] for o in outputs]).numpy()
        p = torch.cat([o[1] for o in outputs]).numpy()
        metrics = compute_metrics(self.task, self.scheme, self.class_names, y, p)
        self.last_metrics[split] = metrics
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()})

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("valid")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_loss = []
        loader = self.trainer.train_dataloader
        self.model.on_train_epoch_start(self.current_epoch, loader)

    def on_train_epoch_end(self) -> None:
        # Runs after this epoch's validation, so the line has both sides and the full time.
        if not self.verbose:
            return
        name, _ = selection_metric(self.task)
        valid = self.last_metrics.get("valid", {}).get(name, float("nan"))
        loss = float(np.mean(self._train_loss)) if self._train_loss else float("nan")
        print(
            f"epoch {self.current_epoch + 1}/{self.trainer.max_epochs}: train/loss {loss:.4f}"
            f"  valid/{name} {valid:.4f}  ({time.perf_counter() - self._epoch_start:.2f} s)",
            flush=True,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The best checkpoint then carries every validation metric of its own epoch.
        checkpoint["valid_metrics"] = dict(self.last_metrics.get("valid", {}))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.model.param_groups(self.weight_decay), lr=self.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs)))
        factor = warmup_linear_decay(self.warmup_epochs * per_epoch, total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def params_hash(
    model_name: str, config: Any, settings: TrainerSettings, seed: int, spec: DataSpec
) -> str:
    """What makes a seed's checkpoint current: model, config, trainer, seed, data, loss."""
    parts: list[Any] = [
        model_name,
        dataclasses.asdict(config),
        # The preset's name is a label: its values are in settings and config, so the same
        # values typed out or taken from a preset are the same run.
        dataclasses.asdict(dataclasses.replace(settings, preset=None)),
        seed,
        spec.extra.get("input_hash"),
        CKPT_FORMAT,
    ]
    weights = spec.extra.get("class_weights")
    if weights is not None:  # only weighted runs add a part: unweighted hashes stay as they were
        parts.append({"class_weights": [float(w) for w in weights]})
    return text_digest(*parts)


def _loader(ds: H5Dataset, batch_size: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=gen,
        # A lone last sample would break BatchNorm in training; drop only that case.
        drop_last=shuffle and len(ds) % batch_size == 1,
    )


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's per-run banners (devices, tips); our own lines say what matters."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # On resume the work dir holds last.ckpt by design.
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _dvclive_logger(live_dir: Path, resume: bool) -> Any:
    from dvclive.lightning import DVCLiveLogger

    # dvcyaml=None: never rewrite the project's dvc.yaml (which declares these plots itself),
    # and it also keeps DVCLive out of the way when it runs inside a `dvc repro` stage.
    return DVCLiveLogger(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, resume=resume)


def train_seed(
    *,
    model_name: str,
    config: Any,
    spec: DataSpec,
    settings: TrainerSettings,
    seed: int,
    h5: Path,
    params: Params,
    paths: Paths,
    phash: str,
) -> dict[str, Any]:
    """Train one seed (resuming from its work dir if present); write ``seed<k>.ckpt``."""
    ckpt_dir = paths.checkpoints(model_name)
    final = ckpt_dir / f"seed{seed}.ckpt"
    work = ckpt_dir / "work" / f"seed{seed}"
    stamp = work.parent / f"seed{seed}.params_hash"  # beside, so Lightning's dir stays its own
    if work.exists() and (not stamp.is_file() or stamp.read_text().strip() != phash):
        shutil.rmtree(work)  # leftovers of a run with other params: start clean
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(phash + "\n")
    last = work / "last.ckpt"
    resume = last.is_file()

    L.seed_everything(seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(params.train.accelerator)
    if accelerator == "gpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    model = registry.build(model_name, spec, config)
    scheme = scheme_for(tuple(params.dataset.label_range))
    module = MSAModule(
        model,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_epochs=settings.warmup_epochs,
        scheme=scheme,
    )
    normalize = params.cache.normalize
    train_ds = H5Dataset(h5, "train", normalize=normalize)
    valid_ds = H5Dataset(h5, "valid", normalize=normalize)
    if len(train_ds) == 0 or len(valid_ds) == 0:
        raise ValueError(f"{h5}: train ({len(train_ds)}) and valid ({len(valid_ds)}) need clips")
    workers = params.train.num_workers
    train_dl = _loader(train_ds, settings.batch_size, True, workers, seed)
    valid_dl = _loader(valid_ds, settings.batch_size, False, workers, seed)

    metric, mode = selection_metric(spec.task)
    monitor = f"valid/{metric}"
    checkpoint = ModelCheckpoint(
        dirpath=work,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        # Saved once the epoch is complete, so a resumed run starts at the next epoch.
        save_on_train_epoch_end=True,
    )
    early = EarlyStopping(monitor=monitor, mode=mode, patience=settings.patience)
    live_dir = paths.report(model_name) / "train" / f"seed{seed}"
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"[{model_name} seed {seed}] {n_params:,} trainable parameters, {len(train_ds)} train / "
        f"{len(valid_ds)} valid clips, {accelerator}"
        + (f", resuming from {last}" if resume else ""),
        flush=True,
    )
    start = time.perf_counter()
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=settings.max_epochs,
            accelerator=accelerator,
            devices=1,
            # Deterministic kernels are free on CPU; on GPU only warn where none exists.
            deterministic=True if accelerator == "cpu" else "warn",
            callbacks=[checkpoint, early],
            logger=_dvclive_logger(live_dir, resume),
            default_root_dir=work,
            enable_progress_bar=True,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=max(1, min(50, len(train_dl))),
        )
        trainer.fit(module, train_dl, valid_dl, ckpt_path=str(last) if resume else None)
    if trainer.interrupted:
        raise RuntimeError(f"{model_name} seed {seed}: training interrupted; rerun to resume")
    best_path = checkpoint.best_model_path
    if not best_path or not Path(best_path).is_file():
        raise RuntimeError(f"{model_name} seed {seed}: no best checkpoint in {work}")
    best = torch.load(best_path, map_location="cpu", weights_only=False)
    state = {
        k.removeprefix("model."): v.cpu()
        for k, v in best["state_dict"].items()
        if k.startswith("model.")
    }
    valid = {k: float(v) for k, v in best.get("valid_metrics", {}).items()}
    payload = {
        "format": CKPT_FORMAT,
        "model": model_name,
        "config": dataclasses.asdict(config),
        "spec": dataclasses.asdict(spec),
        "variant": settings.variant,
        "params": params.model_dump(mode="json"),
        "params_hash": phash,
        "trainer": dataclasses.asdict(settings),
        "state_dict": state,
        "seed": seed,
        "epoch": int(best["epoch"]),
        "epochs_run": int(trainer.current_epoch),
        "selection": {"metric": monitor, "mode": mode},
        "valid": valid,
    }
    # Through a file handle: given a path, torch names the archive's inner folder after it,
    # and the random temporary name would make every checkpoint's bytes (its DVC hash) differ.
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    shutil.rmtree(work, ignore_errors=True)  # resume state is useless once the seed is done
    stamp.unlink(missing_ok=True)
    if work.parent.is_dir() and not any(work.parent.iterdir()):
        work.parent.rmdir()
    seconds = time.perf_counter() - start
    epochs = max(1, trainer.current_epoch)
    print(
        f"[{model_name} seed {seed}] best epoch {payload['epoch'] + 1}: {monitor} "
        f"{valid.get(metric, float('nan')):.4f}; {seconds:.1f} s ({seconds / epochs:.2f} s/epoch)"
        f" → {final}",
        flush=True,
    )
    return {"seed": seed, "epoch": payload["epoch"], metric: valid.get(metric), "seconds": seconds}


def train_model(params: Params, paths: Paths, model_name: str) -> dict[str, Any]:
    """Train ``model_name`` once per seed in ``params.train.seeds``; return a summary."""
    settings, config = resolve_model(params, model_name)
    h5 = paths.h5(settings.variant)
    if not h5.is_file():
        raise FileNotFoundError(
            f"{h5}: the {settings.variant!r} cache is missing "
            f"(models.{model_name}.variant); run the `cache` stage first"
        )
    spec = read_spec(h5)
    if spec.variant != settings.variant:
        raise ValueError(f"{h5}: holds variant {spec.variant!r}, expected {settings.variant!r}")
    weights = class_weights(params, h5, spec)
    if weights is not None:  # read by MSAModel.task_loss; part of the params hash
        spec = dataclasses.replace(spec, extra={**spec.extra, "class_weights": weights})
    print(
        f"[{model_name}] dataset preset {params.dataset.preset}, model preset "
        f"{settings.preset or 'none'}, {settings.variant}"
        + (f", class weights {[round(w, 3) for w in weights]}" if weights else ""),
        flush=True,
    )
    metric, _ = selection_metric(spec.task)
    summary: dict[str, Any] = {
        "model": model_name,
        "variant": settings.variant,
        "task": spec.task,
        "selection": f"valid/{metric}",
    }
    runs = []
    start = time.perf_counter()
    # The curves folder is a stage output even when every seed is already up to date.
    (paths.report(model_name) / "train").mkdir(parents=True, exist_ok=True)
    for seed in params.train.seeds:
        phash = params_hash(model_name, config, settings, seed, spec)
        final = paths.checkpoints(model_name) / f"seed{seed}.ckpt"
        if final.is_file():
            old = torch.load(final, map_location="cpu", weights_only=True)
            if old.get("params_hash") == phash:
                print(f"[{model_name} seed {seed}] up to date: {final}", flush=True)
                runs.append(
                    {
                        "seed": seed,
                        "epoch": old["epoch"],
                        metric: old["valid"].get(metric),
                        "skipped": True,
                    }
                )
                continue
        runs.append(
            train_seed(
                model_name=model_name,
                config=config,
                spec=spec,
                settings=settings,
                seed=seed,
                h5=h5,
                params=params,
                paths=paths,
                phash=phash,
            )
        )
    scores = [r[metric] for r in runs if r.get(metric) is not None]
    summary["seeds"] = len(runs)
    summary["trained"] = sum(not r.get("skipped") for r in runs)
    summary[f"valid_{metric}_mean"] = float(np.mean(scores)) if scores else float("nan")
    summary[f"valid_{metric}_std"] = float(np.std(scores)) if scores else float("nan")
    summary["seconds"] = time.perf_counter() - start
    summary["runs"] = runs
    return summary


def load_checkpoint(path: str | Path) -> tuple[MSAModel, dict[str, Any]]:
    """Rebuild a trained model (eval mode, CPU) from a ``seed<k>.ckpt`` via the registry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (run the `train` stage)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    missing = [k for k in ("model", "config", "spec", "state_dict") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a msaflow checkpoint (missing {missing})")
    spec = DataSpec(**ckpt["spec"])
    config = registry.build_config(ckpt["model"], ckpt["config"])
    model = registry.build(ckpt["model"], spec, config)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


__all__ = [
    "MSAModule",
    "TrainerSettings",
    "balanced_class_weights",
    "class_weights",
    "load_checkpoint",
    "model_section",
    "resolve_model",
    "train_model",
    "trainer_settings",
]
