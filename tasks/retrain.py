"""`retrain`: champion / challenger per model, decided on the validation split only.

A champion lives in ``data/champions/<dataset>/<model>/``: ``champion.json`` (the
selection metric and its valid value, the metrics.json it came from, git commit, the
dvc.lock hash of the checkpoint folder, date, a SHA-256 per checkpoint) beside copies of
the ``seed<k>.ckpt`` files, and the champion it replaced in ``previous/`` (one level) for
a roll-back. The challenger is what ``dvc repro`` just wrote: ``reports/<ds>/<model>/
metrics.json`` and ``data/checkpoints/<ds>/<model>/``. Test values are reported, never
used to decide.

Promotion builds the new champion folder as a hidden sibling and swaps it in with two
renames, so the folder is always a whole old or a whole new champion; a crash between the
two renames leaves the old one as ``.<model>.old-*``, which `read_champion` puts back.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from config.paths import Paths
from config.schema import Params
from tasks.io import file_digest, write_json_atomic
from tasks.metrics import selection_metric

CHAMPION_FILE = "champion.json"
PREVIOUS = "previous"
SPLIT = "valid"  # the only split a decision reads


class ChampionError(ValueError):
    """A champion folder or record that cannot be trusted (named in the message)."""


@dataclass(frozen=True)
class Decision:
    """One model's outcome: the two valid values, and whether the challenger was promoted."""

    model: str
    metric: str
    mode: str
    champion: float | None
    challenger: float | None
    champion_test: float | None
    challenger_test: float | None
    promote: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the flow's return value)."""
        return asdict(self)


def _copy_file(src: Path, dst: Path) -> None:
    # One seam for every byte copied into a champion (tests make it fail half-way).
    shutil.copy2(src, dst)


def _number(value: Any) -> float | None:
    """A finite float, or None for a missing / null / NaN value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _recover(directory: Path) -> None:
    """Put back an old champion left aside by a promotion that stopped between its renames."""
    if directory.exists():
        return
    leftovers = sorted(directory.parent.glob(f".{directory.name}.old-*"), key=os.path.getmtime)
    if leftovers:
        os.rename(leftovers[-1], directory)
        print(f"[retrain] restored {directory} from {leftovers[-1].name} (interrupted swap)")


def read_champion(directory: Path, verify: bool = True) -> dict[str, Any] | None:
    """The champion record of ``directory`` (validated), or None when there is none yet."""
    directory = Path(directory)
    _recover(directory)
    path = directory / CHAMPION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ChampionError(
            f"{path}: not valid JSON ({err}); expected a champion record written by "
            f"`msaflow retrain` (restore it from {directory / PREVIOUS} or delete the folder)"
        ) from err
    if not isinstance(record, dict):
        raise ChampionError(f"{path}: expected a JSON object, got {type(record).__name__}")
    expected = {"model": str, "metric": str, "mode": str, "checkpoints": dict}
    for key, kind in expected.items():
        if not isinstance(record.get(key), kind):
            raise ChampionError(
                f"{path}: key {key!r} must be a {kind.__name__}, got {record.get(key)!r}"
            )
    if record["mode"] not in ("min", "max"):
        raise ChampionError(f"{path}: key 'mode' must be 'min' or 'max', got {record['mode']!r}")
    if _number(record.get("value")) is None:
        raise ChampionError(
            f"{path}: key 'value' must be a finite number, got {record.get('value')!r}"
        )
    if not record["checkpoints"]:
        raise ChampionError(f"{path}: key 'checkpoints' lists no checkpoint file")
    for name, digest in record["checkpoints"].items():
        ckpt = directory / name
        if not ckpt.is_file():
            raise ChampionError(f"{path}: lists {name} but {ckpt} is missing")
        if verify and file_digest(ckpt) != digest:
            raise ChampionError(f"{ckpt}: SHA-256 differs from the one recorded in {path}")
    return record


def read_challenger(metrics_path: Path, metric: str) -> dict[str, float | None]:
    """The challenger's ``metric`` on valid (and test, reported only) from its metrics.json."""
    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: missing; `dvc repro` should have written it")
    try:
        doc = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{metrics_path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get(SPLIT), dict):
        raise ValueError(f"{metrics_path}: expected a {SPLIT!r} object of metrics")
    if metric not in doc[SPLIT]:
        raise ValueError(
            f"{metrics_path}: {SPLIT}.{metric} missing (has {sorted(doc[SPLIT])}); "
            "it is the selection metric of this task"
        )
    test = doc.get("test") if isinstance(doc.get("test"), dict) else {}
    return {"valid": _number(doc[SPLIT][metric]), "test": _number(test.get(metric))}


def improvement(challenger: float, champion: float, mode: str) -> float:
    """How much better the challenger is (positive = better) in the metric's direction."""
    if mode == "min":
        return champion - challenger
    if mode == "max":
        return challenger - champion
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


def decide(
    model: str,
    metric: str,
    mode: str,
    champion: dict[str, Any] | None,
    challenger: dict[str, float | None],
    min_delta: float = 0.0,
    challenger_hash: str | None = None,
) -> Decision:
    """Promote when there is no champion or the challenger is better on valid by > min_delta."""
    if not (min_delta >= 0 and math.isfinite(min_delta)):
        raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
    value, test = challenger.get("valid"), challenger.get("test")
    champ_value = _number(champion.get("value")) if champion else None
    champ_test = _number(champion.get("test_value")) if champion else None

    def result(promote: bool, reason: str) -> Decision:
        return Decision(model, metric, mode, champ_value, value, champ_test, test, promote, reason)

    if value is None:
        return result(False, f"challenger has no finite {SPLIT} {metric}")
    if champion is None:
        return result(True, "no champion yet")
    if champion["metric"] != metric or champion["mode"] != mode:
        # The task itself changed (dataset.task): the old champion answers another question.
        return result(
            True, f"champion was selected on {champion['metric']}, the task now uses {metric}"
        )
    if challenger_hash is not None and champion.get("checkpoint_hash") == challenger_hash:
        return result(False, "same checkpoints as the champion (dvc.lock hash)")
    gain = improvement(value, champ_value, mode)
    # "by more than": a gain equal to min_delta up to float rounding (1.0 - 0.95) is not more.
    if gain > min_delta and not math.isclose(gain, min_delta, rel_tol=1e-9, abs_tol=1e-12):
        return result(True, f"better by {gain:.4g} (> min_delta {min_delta:g})")
    return result(False, f"not better by more than min_delta {min_delta:g} ({gain:+.4g})")


def dvc_lock_hash(lock_path: Path, out: Path) -> str | None:
    """The md5 dvc.lock records for output ``out`` (a path relative to the repo), or None."""
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return None
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{lock_path}: not valid YAML ({err})") from err
    want = Path(out).as_posix()
    for stage in (lock.get("stages") or {}).values():
        for entry in (stage or {}).get("outs") or []:
            if isinstance(entry, dict) and Path(str(entry.get("path"))).as_posix() == want:
                return entry.get("md5")
    return None


def git_commit(cwd: Path | str = ".") -> str | None:
    """``git rev-parse HEAD`` in ``cwd``, or None outside a git checkout / without git."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def promote(
    directory: Path, checkpoints: list[Path], record: dict[str, Any]
) -> dict[str, Any]:
    """Make ``checkpoints`` + ``record`` the champion in ``directory``; the old one → previous/."""
    directory = Path(directory)
    missing = [str(p) for p in checkpoints if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"cannot promote into {directory}: checkpoint(s) missing {missing}"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    _recover(directory)
    new = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
    try:
        digests = {}
        for src in checkpoints:
            src = Path(src)
            _copy_file(src, new / src.name)
            digests[src.name] = file_digest(new / src.name)
        record = {**record, "checkpoints": digests}
        if (directory / CHAMPION_FILE).is_file():
            # One level of history: the old champion's own files, not its previous/.
            (new / PREVIOUS).mkdir()
            for item in sorted(directory.iterdir()):
                if item.is_file():
                    _copy_file(item, new / PREVIOUS / item.name)
        write_json_atomic(new / CHAMPION_FILE, record)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.rmdir(old)  # a free, unique name to rename onto
            os.rename(directory, old)
            try:
                os.rename(new, directory)
            except BaseException:
                os.rename(old, directory)  # the old champion back in place
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(new, directory)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)
    return record


def roll_back(directory: Path) -> dict[str, Any]:
    """Make ``previous/`` the champion again (the swap is atomic as in `promote`)."""
    directory = Path(directory)
    prev = directory / PREVIOUS
    record = read_champion(prev)
    if record is None:
        raise ChampionError(f"{prev}: no previous champion to roll back to")
    names = [prev / name for name in record["checkpoints"]]
    staged = Path(tempfile.mkdtemp(prefix=f".{directory.name}.prev-", dir=directory.parent))
    try:
        for path in names:
            _copy_file(path, staged / path.name)
        record = {**record, "rolled_back": _now()}
        promote(directory, [staged / p.name for p in names], record)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return record


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def selected_models(params: Params, models: list[str] | None) -> list[str]:
    """``models`` (each checked against train.models), or every model of train.models."""
    known = list(params.train.models)
    if not models:
        return known
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"train.models has no {unknown}; expected some of {known}")
    return list(models)


def read_champions(paths: Paths, models: list[str]) -> dict[str, dict[str, Any] | None]:
    """Every model's current champion record (None where there is none): fails fast."""
    return {m: read_champion(paths.champion(m)) for m in models}


def compare_and_promote(
    params: Params,
    paths: Paths,
    champions: dict[str, dict[str, Any] | None],
    min_delta: float = 0.0,
) -> list[Decision]:
    """Decide per model from the challenger's valid metric; promote the winners."""
    metric, mode = selection_metric(params.dataset.task)
    commit = git_commit(paths.base)
    decisions = []
    for model, champion in champions.items():
        metrics_path = paths.report(model) / "metrics.json"
        challenger = read_challenger(metrics_path, metric)
        ckpt_dir = paths.checkpoints(model)
        lock_hash = dvc_lock_hash(
            paths.base / "dvc.lock", Path(os.path.relpath(ckpt_dir, paths.base))
        )
        decision = decide(model, metric, mode, champion, challenger, min_delta, lock_hash)
        if decision.promote:
            record = {
                "model": model,
                "dataset": paths.dataset,
                "task": params.dataset.task,
                "split": SPLIT,
                "metric": metric,
                "mode": mode,
                "value": challenger["valid"],
                "test_value": challenger["test"],
                "metrics_path": metrics_path.as_posix(),
                "metrics": json.loads(metrics_path.read_text(encoding="utf-8")),
                "git_commit": commit,
                "checkpoint_dir": ckpt_dir.as_posix(),
                "checkpoint_hash": lock_hash,
                "promoted_at": _now(),
                "reason": decision.reason,
            }
            seeds = [paths.checkpoint(model, s) for s in params.train.seeds]
            promote(paths.champion(model), seeds, record)
        print(
            f"[{model}] {SPLIT} {metric}: champion {_fmt(decision.champion)}, challenger "
            f"{_fmt(decision.challenger)} → {'PROMOTED' if decision.promote else 'kept'} "
            f"({decision.reason})",
            flush=True,
        )
        decisions.append(decision)
    return decisions


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def decisions_markdown(dataset: str, decisions: list[Decision]) -> str:
    """The markdown table the flow publishes: per model, both values and the decision."""
    rows = [
        f"### Retrain: {dataset} (decided on {SPLIT}; test reported only)",
        "",
        "| model | metric | champion (valid) | challenger (valid) | champion (test) "
        "| challenger (test) | decision |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in decisions:
        arrow = "↓" if d.mode == "min" else "↑"
        verdict = "**promoted**" if d.promote else "kept champion"
        rows.append(
            f"| {d.model} | {d.metric} {arrow} | {_fmt(d.champion)} | {_fmt(d.challenger)} "
            f"| {_fmt(d.champion_test)} | {_fmt(d.challenger_test)} | {verdict}: {d.reason} |"
        )
    return "\n".join(rows) + "\n"
