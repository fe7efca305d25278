"""Stage `train`: one registered model, one Lightning run per seed (docs/contracts.md "train").

Each seed writes ``data/checkpoints/<ds>/<model>/seed<k>.ckpt`` (the BEST validation epoch,
in the format of tasks/training/checkpoint.py) and DVCLive curves under
``reports/<ds>/<model>/train/seed<k>/``, both when the seed is done. While it trains, its
folder is ``data/interim/<ds>/train_work/<model>/seed<k>/`` (``Paths.train_work``): a
killed run resumes from Lightning's ``last.ckpt`` there, random states and curves included
(tasks/training/resume.py), to the bytes an uninterrupted run gives; a seed whose
checkpoint exists with the same params hash is skipped.
Model selection uses the validation split only; the test split is never opened here.

The model's settings come from tasks/training/settings.py (``train.*`` < its preset < the keys
written in ``models.<name>``); the LightningModule from tasks/training/module.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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

from config.errors import ParamsError
from config.paths import Paths
from config.schema import Params
from models import registry
from models.base import DataSpec
from tasks.formats.dataset import CacheFormatError, H5Dataset, collate, read_spec
from tasks.io import atomic_dir, text_digest
from tasks.metrics import scheme_for, selection_metric
from tasks.training import checkpoint
from tasks.training.devices import resolve_accelerator, scale_of, trainer_scale
from tasks.training.module import MSAModule
from tasks.training.resume import RandomStates, cut_curves, resumed_step
from tasks.training.settings import TrainerSettings, resolve_model, variant_note


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


def params_hash(
    model_name: str, config: Any, settings: TrainerSettings, seed: int, spec: DataSpec,
    scale: dict[str, Any] | None = None, code: str | None = None,
) -> str:
    """What makes a seed's checkpoint current: model, config, trainer, seed, data, loss,
    ``scale``: the processes and precision it trained with, when not one fp32 process, and
    ``code``: the digest of the modules training runs (the `code` stage's train.json), when
    there is one, so an edit of a model's code retrains it."""
    parts: list[Any] = [
        model_name,
        dataclasses.asdict(config),
        # The preset's name is a label: its values are in settings and config, so the same
        # values typed out or taken from a preset are the same run.
        settings.model_copy(update={"preset": None}).model_dump(),
        seed,
        spec.extra.get("input_hash"),
        checkpoint.FORMAT,
    ]
    weights = spec.extra.get("class_weights")
    if weights is not None:  # only weighted runs add a part: unweighted hashes stay as they were
        parts.append({"class_weights": [float(w) for w in weights]})
    if scale:  # likewise: one fp32 process adds nothing
        parts.append({"scale": dict(sorted(scale.items()))})
    if code:
        parts.append({"code": code})
    return text_digest(*parts)


def code_digest(paths: Paths) -> str | None:
    """The digest of the `code` stage's record of training's modules (data/code/train.json),
    or None where that stage has not run (a test, a bare `msaflow train`)."""
    record = paths.code / "train.json"
    return text_digest(record.read_text(encoding="utf-8")) if record.is_file() else None


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
    final = paths.checkpoint(model_name, seed)
    work = paths.train_work(model_name, seed)
    stamp = work.parent / f"{work.name}.params_hash"  # beside, so Lightning's dir stays its own
    if work.exists() and (not stamp.is_file() or stamp.read_text().strip() != phash):
        shutil.rmtree(work)  # leftovers of a run with other params: start clean
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(phash + "\n")
    last = work / "last.ckpt"
    resume = last.is_file()
    live_dir = work / "curves"  # DVCLive's, published beside the checkpoint when done
    if resume:
        cut_curves(live_dir, resumed_step(last))  # the cut-short epoch's rows go
    else:
        shutil.rmtree(live_dir, ignore_errors=True)

    L.seed_everything(seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(params.train.accelerator)
    trainer_args = trainer_scale(params.train, accelerator)
    if accelerator == "gpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    model = registry.build(model_name, spec, config)
    scheme = scheme_for(tuple(params.dataset.label_range))
    module = MSAModule(
        model,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_epochs=settings.warmup_epochs,
        schedule=settings.schedule,
        decay_all=settings.decay_all,
        select=settings.select,
        scheme=scheme,
    )
    normalize = params.cache.normalize
    train_ds = H5Dataset(h5, "train", normalize=normalize)
    valid_ds = H5Dataset(h5, "valid", normalize=normalize)
    if len(train_ds) == 0 or len(valid_ds) == 0:
        raise ValueError(f"{h5}: train ({len(train_ds)}) and valid ({len(valid_ds)}) need clips")
    workers = params.train.num_workers
    train_dl = _loader(train_ds, settings.batch_size, True, workers, seed)
    randomness = RandomStates(train_dl.generator)
    valid_dl = _loader(valid_ds, settings.batch_size, False, workers, seed)

    metric, mode = module.selection
    monitor = f"valid/{metric}"
    keeper = ModelCheckpoint(
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
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"[{model_name} seed {seed}] {n_params:,} trainable parameters, {len(train_ds)} train / "
        f"{len(valid_ds)} valid clips, {accelerator}"
        + "".join(f", {k} {v}" for k, v in scale_of(params.train).items())
        + (f", resuming from {last}" if resume else ""),
        flush=True,
    )
    start = time.perf_counter()
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=settings.max_epochs,
            accelerator=accelerator,
            **trainer_args,
            # Deterministic kernels are free on CPU; on GPU only warn where none exists.
            deterministic=True if accelerator == "cpu" else "warn",
            callbacks=[keeper, early, randomness],
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
    if trainer.global_rank != 0:  # launched by torchrun / srun: rank 0 writes the checkpoint
        return {"seed": seed, "rank": trainer.global_rank}
    best_path = keeper.best_model_path
    if not best_path or not Path(best_path).is_file():
        raise RuntimeError(f"{model_name} seed {seed}: no best checkpoint in {work}")
    best = torch.load(best_path, map_location="cpu", weights_only=False)  # Lightning's own
    # the module's count: under DDP the epochs ran in the spawned processes, and only their
    # metrics come back (none when a resumed run had no epoch left to run)
    epochs_run = int(trainer.callback_metrics.get("epochs_done", trainer.current_epoch))
    state = {
        k.removeprefix("model."): v.cpu()
        for k, v in best["state_dict"].items()
        if k.startswith("model.")
    }
    valid = {k: float(v) for k, v in best.get("valid_metrics", {}).items()}
    payload = {
        "format": checkpoint.FORMAT,
        "model": model_name,
        "config": dataclasses.asdict(config),
        "spec": dataclasses.asdict(spec),
        "variant": settings.variant,
        "params": params.model_dump(mode="json"),
        "params_hash": phash,
        "trainer": settings.model_dump(),
        "state_dict": state,
        "seed": seed,
        "epoch": int(best["epoch"]),
        "epochs_run": epochs_run,
        "selection": {"metric": monitor, "mode": mode},
        "valid": valid,
    }
    with atomic_dir(paths.train_curves(model_name, seed)) as curves:
        shutil.copytree(live_dir, curves, dirs_exist_ok=True)
    checkpoint.save(final, payload)
    shutil.rmtree(work, ignore_errors=True)  # resume state is useless once the seed is done
    stamp.unlink(missing_ok=True)
    if work.parent.is_dir() and not any(work.parent.iterdir()):
        work.parent.rmdir()
    seconds = time.perf_counter() - start
    epochs = max(1, epochs_run)
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
    if note := variant_note(params, model_name):
        print(note, flush=True)
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
    metric, _ = selection_metric(spec.task, settings.select,
                                 scheme_for(tuple(params.dataset.label_range)))
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
    scale = scale_of(params.train)
    code = code_digest(paths)
    for seed in params.train.seeds:
        phash = params_hash(model_name, config, settings, seed, spec, scale, code)
        final = paths.checkpoint(model_name, seed)
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
