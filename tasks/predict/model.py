"""`predict`: the trained model to score with, checked against the params and its cache.

Every seed's checkpoint of one model (an :class:`Ensemble`); the current ``extract`` params
must be the ones its features came from, and the HDF5 cache it was trained on must be
there, unchanged, with the train statistics it was normalised with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
from pydantic import ValidationError

from config.errors import NotInWorkspace
from config.overrides import flatten
from config.paths import Paths, checkpoint_seed
from config.schema import CacheParams, DatasetParams, ExtractParams, Params
from models.base import DataSpec, MSAModel
from tasks import extract, features, sources
from tasks.cache import seq_lengths
from tasks.formats.hdf5 import NORM_STREAMS
from tasks.training.checkpoint import CheckpointError
from tasks.training.checkpoint import load as load_checkpoint

# Keys of the params `extract` section that never change a clip's features.
RUN_KEYS = ("workers", "runner", "dask", "fail_fast", "max_failed_fraction")
# Keys that only decide how a clip without a transcript gets one: predict may choose them.
ASR_KEYS = ("extract.text.asr", "extract.text.asr_model")


class PredictError(ValueError):
    """Inputs predict cannot use at all; the message names the file / key and the fix."""


class CheckpointsMissing(NotInWorkspace, PredictError):
    """No trained checkpoint of the model for the dataset in the workspace (``path``)."""


class VideoError(ValueError):
    """One video cannot be scored (its entry gets an ``error``; the others go on)."""


@dataclasses.dataclass
class Ensemble:
    """Every seed's checkpoint of one trained model, with what they share."""

    model: str
    paths: list[Path]
    seeds: list[int]
    models: list[MSAModel]
    spec: DataSpec
    variant: str
    params: dict[str, Any]  # the params the (first) checkpoint was trained with

    @property
    def dataset(self) -> str:
        return str(self.params["dataset"]["name"])

    @property
    def normalize(self) -> bool:
        return bool(self.params["cache"]["normalize"])

    @property
    def label_range(self) -> list[float]:
        return [float(v) for v in self.params["dataset"]["label_range"]]

    @property
    def class_names(self) -> list[str]:
        names = list(self.spec.extra.get("class_names") or [])
        if len(names) != self.spec.num_classes:
            names = [f"class{c}" for c in range(self.spec.num_classes)]
        return names


def find_checkpoints(paths: Paths, model: str, checkpoint: str | Path | None = None) -> list[Path]:
    """The checkpoint file(s) to use: ``checkpoint`` (a file or a folder of ``seed<k>.ckpt``),
    else every seed of ``model`` trained on the params' dataset."""
    if checkpoint is not None:
        given = Path(checkpoint)
        if given.is_file():
            return [given]
        if not given.is_dir():
            raise PredictError(f"{given}: checkpoint not found (a seed<k>.ckpt or its folder)")
        folder = given
    else:
        folder = paths.checkpoints(model)
    found = sorted((p for p in folder.glob("seed*.ckpt") if checkpoint_seed(p) is not None),
                   key=checkpoint_seed)
    if not found:
        how = (
            f"train it with `msaflow train {model}` (or `dvc repro train@{model}`)"
            if checkpoint is None
            else "pass a seed<k>.ckpt file or the folder `msaflow train` writes them to"
        )
        raise CheckpointsMissing(
            f"{folder}: no trained checkpoint (seed<k>.ckpt) of model {model!r} for dataset "
            f"{paths.dataset!r}; {how}", folder)
    return found


def load_ensemble(ckpt_paths: Sequence[Path], model: str) -> Ensemble:
    """Load every checkpoint; they must all be ``model``, on one variant and one cache."""
    models: list[MSAModel] = []
    seeds: list[int] = []
    first: dict[str, Any] | None = None
    for path in ckpt_paths:
        try:
            net, ckpt = load_checkpoint(path)
        except (FileNotFoundError, CheckpointError) as err:
            raise PredictError(str(err)) from None
        if ckpt["model"] != model:
            raise PredictError(
                f"{path}: is a checkpoint of model {ckpt['model']!r}, not {model!r} "
                f"(--model {ckpt['model']} uses it)"
            )
        if "params" not in ckpt or "variant" not in ckpt:
            raise PredictError(f"{path}: has no 'params'/'variant' (not a `train` checkpoint)")
        if first is None:
            first = ckpt
        else:
            for key, mine, theirs in (
                ("variant", ckpt["variant"], first["variant"]),
                ("spec", ckpt["spec"], first["spec"]),
            ):
                if mine != theirs:
                    raise PredictError(
                        f"{path}: its {key} differs from {ckpt_paths[0]}'s; the seeds of one "
                        "ensemble must be trained on the same cache (retrain the model)"
                    )
        models.append(net)
        seeds.append(int(ckpt.get("seed", checkpoint_seed(Path(path)) or 0)))
    assert first is not None, "find_checkpoints returns at least one path"
    return Ensemble(
        model=model,
        paths=[Path(p) for p in ckpt_paths],
        seeds=seeds,
        models=models,
        spec=DataSpec(**first["spec"]),
        variant=str(first["variant"]),
        params=first["params"],
    )


def _feature_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """Every ``extract.*`` value that shapes the model input, by dotted key: what the extract
    cache keys each modality on (``extract.modality_params``) plus ``text.max_tokens``."""
    try:  # validated: keys added to the params since the checkpoint get their defaults
        cfg = ExtractParams.model_validate(raw)
    except ValidationError:  # compare as stored; the differing key is named all the same
        return {
            k: v for k, v in flatten(raw, "extract.").items()
            if k.removeprefix("extract.") not in RUN_KEYS
        }
    out: dict[str, Any] = {}
    for modality in features.MODALITIES:
        try:
            values = extract.modality_params(modality, cfg)
        except (OSError, RuntimeError, ValueError):  # e.g. an OpenFace build no longer there
            values = getattr(cfg, modality).model_dump(mode="json")
        out.update(flatten(values, f"extract.{modality}."))
    out["extract.text.max_tokens"] = cfg.text.max_tokens  # not in the cache key: truncation
    return {k: v for k, v in out.items() if k not in ASR_KEYS}


def check_params(ens: Ensemble, params: Params) -> None:
    """The current ``extract`` params must be the ones the checkpoint's features came from."""
    source = ens.params["dataset"].get("source", DatasetParams.model_fields["source"].default)
    if source not in sources.names() or not sources.get(source).media:
        raise PredictError(
            f"{ens.paths[0]}: trained on dataset.source {source!r} ({ens.dataset}), whose "
            "features are not made by the `extract` extractors; predict on videos needs a "
            "model trained on dataset.source: raw"
        )
    theirs = _feature_keys(ens.params["extract"])
    ours = _feature_keys(params.extract.model_dump(mode="json"))
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key, "<absent>") != theirs.get(key, "<absent>"):
            raise PredictError(
                f"{ens.paths[0]} was trained with {key} = {theirs.get(key, '<absent>')!r} but "
                f"the current params have {ours.get(key, '<absent>')!r}; predict with the "
                f"training value (-S {key}=...) or retrain the model with the current params"
            )


def prepare_params(ens: Ensemble, params: Params) -> Params:
    """Current params with the checkpoint's ``cache`` section (sequence lengths)."""
    try:
        cache = CacheParams.model_validate(ens.params["cache"])
    except ValidationError as err:
        raise PredictError(f"{ens.paths[0]}: its cache params do not validate: {err}") from None
    used = params.model_copy(update={"cache": cache})
    lengths = seq_lengths(used, ens.variant)
    if lengths != ens.spec.seq_len:
        raise PredictError(
            f"{ens.paths[0]}: sequence lengths {ens.spec.seq_len} differ from those its "
            f"params give ({lengths}); retrain the model"
        )
    return used


def check_cache(h5: Path, ens: Ensemble) -> None:
    """The cache the model was trained on must be there, unchanged, with its statistics."""
    where = f"{ens.paths[0]} (dataset {ens.dataset!r}, variant {ens.variant!r})"
    if not h5.is_file():
        raise PredictError(
            f"{h5}: cache not found; it holds the train statistics {where} was normalised "
            "with: run `msaflow cache` (or `dvc pull` / `dvc repro cache`)"
        )
    with h5py.File(h5, "r") as f:
        theirs = ens.spec.extra.get("input_hash")
        ours = f.attrs.get("input_hash")
        ours = ours.decode() if isinstance(ours, bytes) else ours
        if theirs is not None and ours != theirs:
            raise PredictError(
                f"{h5}: input_hash {ours!r} is not the one {ens.paths[0]} was trained on "
                f"({theirs!r}): the cache was rebuilt since, so its statistics are not the "
                f"model's; retrain with `msaflow train {ens.model}`"
            )
        if not ens.normalize:
            return
        for m in NORM_STREAMS:
            for stat in ("mean", "std"):
                key = f"norm/{m}/{stat}"
                if key not in f:
                    raise PredictError(
                        f"{h5}: dataset {key!r} (train statistics) is missing but "
                        f"{ens.paths[0]} was trained with cache.normalize: true; rebuild the "
                        "cache with `msaflow cache`"
                    )
                if f[key].shape != (ens.spec.dims[m],):
                    raise PredictError(
                        f"{h5}: {key!r} has shape {f[key].shape}, expected "
                        f"({ens.spec.dims[m]},) for {m} features"
                    )

