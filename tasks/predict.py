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
import pandas as pd
import torch
from pydantic import ValidationError

from models.base import DataSpec, MSAModel
from msaflow.io import write_json_atomic
from msaflow.overrides import flatten
from msaflow.paths import Paths
from msaflow.schema import CacheParams, DatasetParams, ExtractParams, Params
from tasks import extract, features, sources
from tasks.cache import Clip, load_clip, prepare, seq_lengths
from tasks.features import MODALITIES
from tasks.features.facemesh import NO_FACE_WARNING
from tasks.features.text import load_tokenizer
from tasks.formats.dataset import H5Dataset
from tasks.formats.hdf5 import NORM_STREAMS, SplitWriter
from tasks.metrics import SIMS_BINS, scheme_for
from tasks.training.checkpoint import forward
from tasks.training.checkpoint import load as load_checkpoint
from tasks.training.devices import torch_device

# Keys of the params `extract` section that never change a clip's features.
RUN_KEYS = ("workers", "runner", "dask", "fail_fast", "max_failed_fraction")
# Keys that only decide how a clip without a transcript gets one: predict may choose them.
ASR_KEYS = ("extract.text.asr", "extract.text.asr_model")
SPLIT = "test"  # the scratch file's one split (any of the loader's split names would do)
NO_TRANSCRIPT = "no transcript: the text modality got an empty transcript"
NO_SPEECH = "no transcript, and speech recognition heard no words: the text modality is empty"
ALIGNED_NO_WORDS = (
    "aligned variant: audio and vision are averaged over the transcript's words, so "
    "without words the model saw no audio or vision either"
)


class PredictError(ValueError):
    """Inputs predict cannot use at all; the message names the file / key and the fix."""


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


def _seed_of(path: Path) -> int:
    digits = path.stem.removeprefix("seed")
    return int(digits) if digits.isdigit() else -1


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
    found = sorted(
        (p for p in folder.glob("seed*.ckpt") if _seed_of(p) >= 0), key=_seed_of
    )
    if not found:
        how = (
            f"train it with `msaflow train {model}` (or `dvc repro train@{model}`)"
            if checkpoint is None
            else "pass a seed<k>.ckpt file or the folder `msaflow train` writes them to"
        )
        raise PredictError(
            f"{folder}: no trained checkpoint (seed<k>.ckpt) of model {model!r} for dataset "
            f"{paths.dataset!r}; {how}"
        )
    return found


def load_ensemble(ckpt_paths: Sequence[Path], model: str) -> Ensemble:
    """Load every checkpoint; they must all be ``model``, on one variant and one cache."""
    models: list[MSAModel] = []
    seeds: list[int] = []
    first: dict[str, Any] | None = None
    for path in ckpt_paths:
        try:
            net, ckpt = load_checkpoint(path)
        except FileNotFoundError as err:
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
        seeds.append(int(ckpt.get("seed", _seed_of(Path(path)))))
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


def default_out(paths: Paths, model: str) -> Path:
    """Where predictions go without ``--out``: ``predictions/<dataset>/<model>.json`` under
    the repo root (git ignores the folder; nothing lands beside the project's files)."""
    return paths.base / "predictions" / paths.dataset / f"{model}.json"


def read_transcripts(path: str | Path) -> pd.DataFrame:
    """A transcripts CSV: a ``text`` column and a ``path`` and/or ``clip_id`` column."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: transcripts file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "text" not in frame.columns or not {"path", "clip_id"} & set(frame.columns):
        raise PredictError(
            f"{path}: expected columns text and path (or clip_id = the video's file name "
            f"without extension), got {list(frame.columns)}"
        )
    return frame


def transcript_for(video: Path, table: pd.DataFrame, source: Path) -> str | None:
    """The transcript of ``video`` in ``table`` (by path, else by file stem); None if absent."""
    target = video.resolve()
    hits: list[tuple[int, str]] = []
    for i, row in enumerate(table.to_dict("records")):
        given = str(row.get("path", "")).strip()
        if given:
            p = Path(given).expanduser()
            candidates = [p] if p.is_absolute() else [p, source.parent / p]
            if any(c.resolve() == target for c in candidates):
                hits.append((i, row["text"]))
                continue
        if str(row.get("clip_id", "")).strip() == video.stem:
            hits.append((i, row["text"]))
    texts = {t for _, t in hits}
    if len(texts) > 1:
        rows = [i + 2 for i, _ in hits]  # 1-based, after the header line
        raise PredictError(f"{source}: lines {rows} give different transcripts for {video}")
    return hits[0][1] if hits else None


class _Entries:
    """The ``CsdReader.get`` interface over one clip's extracted arrays."""

    def __init__(self, features: np.ndarray, intervals: np.ndarray) -> None:
        self.entry = (features, intervals)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.entry


def _no_text(cfg: ExtractParams, words_dim: int) -> dict[str, _Entries]:
    """What an empty transcript gives: no words, the tokenizer's ids of "" ([CLS] [SEP])."""
    tokenizer = load_tokenizer(cfg.text.tokenizer)
    ids = np.asarray(tokenizer("", add_special_tokens=True)["input_ids"], np.int64)
    return {
        "words": _Entries(np.zeros((0, 1), dtype="S1"), np.zeros((0, 2))),
        "word_embeddings": _Entries(np.zeros((0, words_dim), np.float32), np.zeros((0, 2))),
        "tokens": _Entries(ids.reshape(-1, 1), np.zeros((len(ids), 2))),
    }


@dataclasses.dataclass
class Featurized:
    """One video's model input as the cache stage reads it from the .csd, and what it says."""

    clip: Clip
    notes: list[str]
    transcript: str | None  # what the text modality used (None: no transcript)
    source: str | None  # where it came from: given, asr:<engine>
    absent: list[str]  # modalities scored absent (robustness stage's "absent" conditions)


def _placeholder(dim: int) -> _Entries:
    """An absent audio / vision stream before `prepare`: one zero row covering any word, so
    the aligned variant keeps the words; :func:`drop_absent` then empties the stream."""
    return _Entries(np.zeros((1, dim), np.float32), np.array([[0.0, 1e9]]))


def _absent_modalities(
    result: dict[str, Any], has_text: bool, allow: bool, video: Path
) -> tuple[list[str], list[str]]:
    """Which modalities the video lacks (no stream, no face, no transcript) and the notes
    saying why; VideoError if it lacks them and ``allow`` is false, or lacks them all."""
    absent: dict[str, str] = {}
    for modality in ("audio", "vision"):
        if modality in result["missing"]:
            absent[modality] = next(e["error"] for e in result["errors"]
                                    if e["modality"] == modality and e["severity"] == "error")
    if "vision" not in absent and any(
        e["modality"] == "vision" and e["error"] == NO_FACE_WARNING for e in result["errors"]
    ):
        absent["vision"] = NO_FACE_WARNING
    if not has_text:
        absent["text"] = "no transcript"
    if absent and not allow:
        raise VideoError(
            f"{video}: " + "; ".join(f"{m}: {why}" for m, why in absent.items())
            + " (predict.allow_absent is false; set it true to score the video with "
            f"{' and '.join(absent)} absent)"
        )
    if len(absent) == len(MODALITIES):
        raise VideoError(f"{video}: no modality to score (" + "; ".join(
            f"{m}: {why}" for m, why in absent.items()) + ")")
    notes = [f"{m} absent: {why}; scored without it" for m, why in absent.items()
             if m != "text"]
    return [m for m in MODALITIES if m in absent], notes


def featurize(
    video: Path, text: str | None, cfg: ExtractParams, cache_dir: Path, spec: DataSpec,
    allow_absent: bool = True,
) -> Featurized:
    """One video's features as the cache stage reads them from the .csd, its notes, the
    transcript the text modality used with where it came from (``asr:<engine>`` when
    ``extract.text.asr`` recognised it), and the modalities it lacks (``allow_absent``: scored
    absent; else a VideoError)."""
    if not video.is_file():
        raise VideoError(f"{video}: video file not found")
    row = {"clip_id": video.stem, "media": str(video), "start": None, "end": None,
           "text": text or ""}
    # A failed modality is reported per video here, never raised by the extractor.
    result = extract.extract_clip(row, cfg.model_copy(update={"fail_fast": False}), cache_dir)
    failed = [
        f"{e['modality']}: {e['error']}"
        for e in result["errors"]
        if e["severity"] == "error" and (text or e["modality"] != "text")
        and e["modality"] not in result["missing"]
    ]
    if failed:
        raise VideoError("; ".join(failed))
    said, source = text, "given" if text else None
    if not text and result["status"].get("text") in ("cached", "computed"):  # recognised
        path = extract.cache_path(cache_dir, "text", result["keys"]["text"])
        with np.load(path, allow_pickle=False) as npz:
            said, source = str(npz["transcript"]), str(npz["transcript_source"])
    absent, notes = _absent_modalities(result, bool(said), allow_absent, video)
    notes += [f"{e['modality']}: {e['error']}" for e in result["errors"]
              if e["severity"] == "warning" and e["error"] != NO_FACE_WARNING]
    made = extract.outputs(cfg)  # .csd stem → (modality, output)
    wanted = {name: (made[name][0], made[name][1]) for name in ("words", "word_embeddings",
                                                                 "tokens")}
    for modality in ("audio", "vision"):
        chosen = features.chosen(cfg, modality).outputs[0]
        wanted[modality] = (modality, chosen)
    readers: dict[str, Any] = {}
    files: dict[str, Path] = {}
    if not said:
        readers.update(_no_text(cfg, spec.dims["words"]))
        files.update({k: Path("<empty transcript>") for k in readers})
        notes.insert(0, NO_TRANSCRIPT if cfg.text.asr == "none" else NO_SPEECH)
    for modality in ("audio", "vision"):
        if modality in absent:
            readers[modality] = _placeholder(spec.dims[modality])
            files[modality] = Path(f"<{modality} absent>")
    for name, (modality, output) in wanted.items():
        if name in readers:
            continue
        npz_path = extract.cache_path(cache_dir, modality, result["keys"][modality])
        with np.load(npz_path, allow_pickle=False) as npz:
            readers[name] = _Entries(*output.read(npz))
        files[name] = npz_path
    try:
        clip = load_clip(readers, files, video.stem)
    except ValueError as err:
        raise VideoError(str(err)) from None
    got = {"words": clip.words.shape[1], "audio": clip.audio[1].shape[1],
           "vision": clip.vision[1].shape[1]}
    if got != {k: spec.dims[k] for k in got}:
        raise VideoError(f"{video}: feature sizes {got} differ from the model's {spec.dims}")
    return Featurized(clip, notes, said, source if said else None, absent)


def drop_absent(rows: dict[str, np.ndarray], absent: Sequence[str]) -> dict[str, np.ndarray]:
    """``prepare``'s rows with each absent audio / vision stream emptied: zero rows, so the
    writer pads it with zeros and the loader masks every position (the robustness stage's
    absent condition). An absent text already has no word and only [CLS] [SEP]."""
    out = dict(rows)
    for m in ("audio", "vision"):
        if m in absent:
            out[m] = rows[m][:0]
    return out


def asr_for(params: Params, asr: str | None) -> ExtractParams:
    """The extract params predict runs with: ``asr`` (``--asr``) when given; else the
    params' own engine; else ``pocketsphinx`` for English (it ships offline), so a video
    without a transcript still gets a text modality."""
    text = params.extract.text
    if asr is None:
        asr = text.asr if text.asr != "none" else "pocketsphinx" if text.language == "en" \
            else "none"
    try:
        chosen = type(text).model_validate({**text.model_dump(), "asr": asr})
    except ValidationError as err:
        raise PredictError(f"--asr {asr}: {err.errors()[0]['msg']}") from None
    return params.extract.model_copy(update={"text": chosen})


def polarity(score: float, label_range: Sequence[float]) -> str:
    """MMSA's polarity of a score: negative below 0 (Has0's split), neutral at exactly 0,
    positive above; SIMS labels ([-1, 1]) use Mult_acc_3's bins, neutral in (-0.1, 0.1]."""
    if scheme_for(tuple(label_range)) == "sims":
        _, neg_hi, neu_hi, _ = SIMS_BINS["Mult_acc_3"]
        x = min(max(score, -1.0), 1.0)
        return "negative" if x <= neg_hi else "neutral" if x <= neu_hi else "positive"
    return "negative" if score < 0 else "neutral" if score == 0 else "positive"


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
            polarity=polarity(score, ens.label_range),
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


def format_table(entries: list[dict[str, Any]]) -> str:
    """A few aligned columns per video for the terminal."""
    width = max([len("video"), *(len(Path(e["path"]).name) for e in entries)])
    lines = [f"{'video':<{width}}  transcript  prediction"]
    for e in entries:
        name = Path(e["path"]).name
        if "error" in e:
            lines.append(f"{name:<{width}}  {'-':<10}  error: {e['error']}")
            continue
        has_text = "yes" if e["transcript"] is not None else "none"
        if "score" in e:
            seeds = " ".join(f"{s:+.3f}" for s in e["seed_scores"])
            what = f"{e['score']:+.3f} {e['polarity']}"
            if len(e["seed_scores"]) > 1:
                what += f"  (seeds {seeds})"
        else:
            what = f"{e['class']} {e['probabilities'][e['class']]:.2f}"
        if e.get("absent"):
            what += f"  [absent: {', '.join(e['absent'])}]"
        lines.append(f"{name:<{width}}  {has_text:<10}  {what}")
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
    out = Path(out) if out is not None else default_out(paths, model)
    if text is not None and transcripts is not None:
        raise PredictError("give --text or --transcripts, not both")
    if text is not None and len(videos) > 1:
        raise PredictError(
            f"--text is one transcript but {len(videos)} videos were given; use --transcripts "
            "CSV (columns path or clip_id, text)"
        )
    table = read_transcripts(transcripts) if transcripts is not None else None
    ens = load_ensemble(find_checkpoints(paths, model, checkpoint), model)
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
                said = (
                    transcript_for(Path(video), table, Path(transcripts))
                    if table is not None else text
                )
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
                notes, absent = got.notes, got.absent
                if said is None and ens.variant == "aligned":
                    notes.append(ALIGNED_NO_WORDS)
                    absent = list(MODALITIES)  # no word: no aligned audio or vision row
                entry["absent"] = absent
                entry["notes"] = notes
                writer.append(Path(video).stem, said or "", math.nan, -1, rows)
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
        "predictions": entries,
    }
    write_json_atomic(out, doc)
    print("\n" + format_table(entries))  # own line under a Prefect log prefix
    print(f"{len(entries) - failed} of {len(entries)} video(s) scored → {out}")
    return doc

