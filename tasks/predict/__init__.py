"""`predict`: sentiment of a user's own videos from a trained model (docs/contracts.md "predict").

Per video: the extract stage's extractors (``extract_clip`` with the params' ``extract``
section, into a scratch per-clip cache), the cache stage's per-clip input (``load_clip``,
``prepare``, ``SplitWriter``'s padding and token mask), the loader's z-score with the TRAIN
statistics of the HDF5 cache the checkpoint was trained on (``H5Dataset``) and evaluate's
forward pass (``tasks.training.checkpoint.forward``), once per seed. The rows go through a scratch
one-split HDF5 written and read by those same classes, so a clip that is in the cache gets
exactly the input `evaluate` gives it. Not a DVC stage: it reads artifacts and writes the
file the user names.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from config.paths import Paths
from config.schema import Params
from tasks import extract, features
from tasks.cache import prepare
from tasks.demo import DEMO_WARNING, is_demo
from tasks.features import MODALITIES
from tasks.formats.dataset import H5Dataset
from tasks.formats.hdf5 import NORM_STREAMS, SplitWriter
from tasks.io import check_writable, write_json_atomic
from tasks.metrics import polarity
from tasks.predict.inputs import drop_absent, featurize
from tasks.predict.model import (
    Ensemble,
    PredictError,
    check_cache,
    check_params,
    find_checkpoints,
    load_ensemble,
    prepare_params,
)
from tasks.predict.transcripts import asr_for, read_transcripts, transcript_for
from tasks.training.checkpoint import forward
from tasks.training.devices import torch_device

SPLIT = "test"  # the scratch file's one split (any of the loader's split names would do)
ALIGNED_NO_WORDS = (
    "aligned variant: audio and vision are averaged over the transcript's words, so "
    "without words the model saw no audio or vision either"
)



def preload(params: Params) -> None:
    """Import what scoring needs and load the extractors' models now (each feature set's
    ``warm``), e.g. while the Prefect server the command reports to starts."""
    for modality in MODALITIES:
        chosen = features.chosen(params.extract, modality)
        if chosen.warm is not None:
            chosen.warm(features.section(params.extract, modality))


def _entry(video: str, ens: Ensemble) -> dict[str, Any]:
    return {
        "path": video,
        "model": ens.model,
        "checkpoints": [str(p) for p in ens.paths],
        "seeds": list(ens.seeds),
        "variant": ens.variant,
        "dataset": ens.dataset,
        "task": ens.spec.task,
    }


def _score(entry: dict[str, Any], outs: list[np.ndarray], ens: Ensemble) -> None:
    """Fill in the ensemble's prediction from each seed's output for this video."""
    if ens.spec.task == "regression":
        per_seed = [float(o) for o in outs]
        score = float(np.mean(per_seed))
        entry.update(
            score=score,
            seed_scores=per_seed,
            polarity=polarity(score, tuple(ens.label_range)).lower(),
            label_range=ens.label_range,
        )
        return
    names = ens.class_names
    probs = [torch.softmax(torch.from_numpy(np.asarray(o)), dim=0).numpy() for o in outs]
    mean = np.mean(probs, axis=0)
    entry.update(
        **{"class": names[int(mean.argmax())]},
        probabilities={n: float(p) for n, p in zip(names, mean, strict=True)},
        seed_classes=[names[int(p.argmax())] for p in probs],
    )


def transcript_kind(source: str | None) -> str:
    """Where a video's transcript came from, as the terminal shows it: ``typed`` (--text or
    --transcripts), ``asr:<engine>`` (speech recognition), ``none``."""
    if source is None:
        return "none"
    return source if source.startswith("asr:") else "typed"


def format_table(entries: list[dict[str, Any]]) -> str:
    """A few aligned columns per video for the terminal."""
    width = max([len("video"), *(len(Path(e["path"]).name) for e in entries)])
    lines = [f"{'video':<{width}}  {'transcript':<16}  prediction"]
    for e in entries:
        name = Path(e["path"]).name
        if "error" in e:
            lines.append(f"{name:<{width}}  {'-':<16}  error: {e['error']}")
            continue
        has_text = transcript_kind(e.get("transcript_source"))
        if "score" in e:
            seeds = " ".join(f"{s:+.3f}" for s in e["seed_scores"])
            what = f"{e['score']:+.3f} {e['polarity']}"
            if len(e["seed_scores"]) > 1:
                what += f"  (seeds {seeds})"
        else:
            what = f"{e['class']} {e['probabilities'][e['class']]:.2f}"
        if e.get("absent"):
            what += f"  [absent: {', '.join(e['absent'])}]"
        lines.append(f"{name:<{width}}  {has_text:<16}  {what}")
    return "\n".join(lines)


def predict_videos(
    params: Params,
    paths: Paths,
    model: str,
    videos: Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    text: str | None = None,
    transcripts: str | Path | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    asr: str | None = None,
) -> dict[str, Any]:
    """Score ``videos`` with every seed of ``model``; write ``out`` (JSON) and return it.

    ``cache_dir``: where extracted features are kept (a temporary folder by default; never
    the stage's own ``extract_cache``). ``asr``: the speech
    recognition engine for a video without a transcript (see :func:`asr_for`).
    """
    if not videos:
        raise PredictError("no video given")
    out = Path(out) if out is not None else paths.predictions(model)
    check_writable(out)  # before the work: a full disk or a read-only folder says so now
    if text is not None and transcripts is not None:
        raise PredictError("give --text or --transcripts, not both")
    if text is not None and len(videos) > 1:
        raise PredictError(
            f"--text is one transcript but {len(videos)} videos were given; use --transcripts "
            "CSV (columns path or clip_id, text)"
        )
    table = read_transcripts(transcripts) if transcripts is not None else None
    ens = load_ensemble(find_checkpoints(paths, model, checkpoint), model)
    demo = is_demo(ens.params.get("dataset") or {})
    if demo:
        print(f"warning: {ens.model} was {DEMO_WARNING}")
    check_params(ens, params)
    used = prepare_params(ens, params)
    extract_cfg = asr_for(params, asr)
    h5 = dataclasses.replace(paths, dataset=ens.dataset).h5(ens.variant)
    check_cache(h5, ens)
    device = torch_device(params.train.accelerator)

    entries: list[dict[str, Any]] = []
    scored: list[int] = []  # entry index of each row of the scratch file
    with tempfile.TemporaryDirectory(prefix="msaflow-predict-") as tmp:
        features_dir = Path(cache_dir) if cache_dir is not None else Path(tmp) / "extract_cache"
        scratch = Path(tmp) / "predict.h5"
        with h5py.File(scratch, "w") as f, h5py.File(h5, "r") as stats:
            writer = SplitWriter(f.create_group(SPLIT), ens.spec.seq_len, ens.spec.dims)
            if ens.normalize:
                for m in NORM_STREAMS:
                    for stat in ("mean", "std"):
                        key = f"norm/{m}/{stat}"
                        f.create_dataset(key, data=stats[key][()])
            for video in videos:
                entry = _entry(str(video), ens)
                if demo:
                    entry["notes"] = [DEMO_WARNING]
                said, text_notes = (transcript_for(Path(video), table) if table is not None
                                    else (text, []))
                said = said if said and said.strip() else None
                entry["transcript"] = said
                entry["transcript_source"] = (
                    None if said is None else str(transcripts) if table is not None else "--text"
                )
                try:
                    with extract.single_threaded():  # the stage's numerics
                        got = featurize(Path(video), said, extract_cfg, features_dir,
                                        ens.spec, params.predict.allow_absent)
                    if said is None and got.transcript is not None:
                        entry["transcript"] = said = got.transcript
                        entry["transcript_source"] = got.source
                    rows = drop_absent(prepare(got.clip, ens.variant, used), got.absent)
                except ValueError as err:  # VideoError, or a clip the aligner cannot use
                    entry["error"] = str(err)
                    entries.append(entry)
                    continue
                notes, absent = text_notes + got.notes, got.absent
                if said is None and ens.variant == "aligned":
                    notes.append(ALIGNED_NO_WORDS)
                    absent = list(MODALITIES)  # no word: no aligned audio or vision row
                entry["absent"] = absent
                entry["notes"] = ([DEMO_WARNING] if demo else []) + notes
                writer.append(f"video{len(scored)}", said or "", math.nan, -1, rows)
                scored.append(len(entries))
                entries.append(entry)
        if scored:
            dataset = H5Dataset(scratch, SPLIT, normalize=ens.normalize)
            outs = [forward(net, dataset, device)[2] for net in ens.models]  # (seeds, N[, C])
            dataset.close()
            for row, index in enumerate(scored):
                _score(entries[index], [o[row] for o in outs], ens)

    failed = sum("error" in e for e in entries)
    doc = {
        "model": ens.model,
        "dataset": ens.dataset,
        "variant": ens.variant,
        "task": ens.spec.task,
        "checkpoints": [str(p) for p in ens.paths],
        "videos": len(entries),
        "failed": failed,
        **({"warning": f"{ens.model} was {DEMO_WARNING}"} if demo else {}),
        "predictions": entries,
    }
    write_json_atomic(out, doc)
    print("\n" + format_table(entries))  # own line under a Prefect log prefix
    print(f"{len(entries) - failed} of {len(entries)} video(s) scored → {out}")
    if demo:
        print(f"warning: {ens.model} was {DEMO_WARNING}")
    return doc

