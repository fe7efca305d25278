"""The stages, each declared once; their order is dvc.yaml's, the one DAG.

An entry names the stage (its dvc.yaml stage, params section, ``tasks/<name>.py`` module and
``msaflow <name>`` command), says in one line what it does, and names its work function as
``"module:function"``, imported only when the stage runs (so listing the stages, as
``msaflow --help`` does, imports no stage's dependencies). The work function takes
``(params, paths)``, plus the model's name for a stage that runs once per model (dvc.yaml's
``foreach: ${train.models}``), plus ``map_fn`` for one that fans out per clip on Prefect's
task runner; it returns the stage's summary (a dict, shown as a table in the flow run; its
``artifacts``, ``{title: file}``, are published too).

The CLI's stage commands, the Prefect flows (flows/stages.py) and the whole-pipeline run
(``msaflow run``) are derived from this table; :func:`order` reads dvc.yaml for the order and
fails when the two disagree. Adding a stage: its work module, one entry here, its dvc.yaml
stage (and its params section).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class StageError(ValueError):
    """dvc.yaml and the stage table disagree, or a stage name is unknown."""


@dataclass(frozen=True)
class Stage:
    """One stage of the DAG (see the module docstring)."""

    name: str
    title: str
    work: str  # "module:function"
    per_model: bool = False  # once per model of train.models (dvc.yaml foreach)
    per_clip: bool = False  # the work fans out per clip: it takes map_fn
    # "module:function" of (params, paths) -> bool: whether the whole-pipeline run needs it
    needed: str | None = None

    def function(self) -> Callable[..., dict[str, Any]]:
        """The work function (its module is imported now)."""
        return _resolve(self.work)

    def is_needed(self, params: Any, paths: Any) -> bool:
        """Whether ``msaflow run`` runs this stage for these params."""
        return self.needed is None or bool(_resolve(self.needed)(params, paths))


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


STAGES: tuple[Stage, ...] = (
    Stage("code", "hash each stage's own modules (data/code/<stage>.json): a stage re-runs "
          "when code it runs changes", "tasks.stages:write_code"),
    Stage("demo", "generate the demo corpus (data/raw/demo)", "tasks.demo.corpus:run",
          needed="tasks.demo.corpus:needed"),
    Stage("ingest", "the dataset's raw files → manifest.csv + ingest_errors.csv",
          "tasks.ingest:build_manifest"),
    Stage("extract", "features per clip → one .csd per feature set + extract_errors.csv",
          "tasks.extract:run", per_clip=True),
    Stage("cache", ".csd files → HDF5 tensors (aligned / unaligned)",
          "tasks.cache:build_cache"),
    Stage("train", "train one model, every seed of train.seeds", "tasks.train:train_model",
          per_model=True),
    Stage("evaluate", "score one model's checkpoints on valid and test",
          "tasks.evaluate:evaluate_model", per_model=True),
    Stage("robustness", "score one model's checkpoints with modalities absent, missing and "
          "noisy (params robustness.*)", "tasks.robustness:evaluate_robustness",
          per_model=True),
    Stage("report", "the summary across models (reports/summary_<dataset>.md), the plots' "
          "data and the HTML results report (reports/report_<dataset>.html)",
          "tasks.report:write_report"),
)


def write_code(params: Any, paths: Any) -> dict[str, Any]:
    """The `code` stage's work (tasks/codedeps.py): the modules of every other stage."""
    from tasks import codedeps

    return codedeps.write_code(paths, {s.name: s.work for s in STAGES if s.name != "code"})


def names() -> list[str]:
    """Every stage's name, in the table's order."""
    return [s.name for s in STAGES]


def get(name: str) -> Stage:
    """The stage called ``name``."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise StageError(f"unknown stage {name!r}; expected one of {names()}")


# The project's own DAG, beside its packages: what a run outside the repository root (a
# folder holding only params.yaml) follows.
PROJECT_DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"


def dvc_stage_names(dvc_yaml: str | Path | None = None) -> list[str]:
    """The stage names dvc.yaml lists, in its order (``dvc_yaml``; default: the one in the
    current folder, else the project's)."""
    if dvc_yaml is None:
        dvc_yaml = "dvc.yaml" if Path("dvc.yaml").is_file() else PROJECT_DVC_YAML
    path = Path(dvc_yaml)
    if not path.is_file():
        raise StageError(f"{path}: not found (run from the repository root)")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return list(doc.get("stages") or {})


def order(dvc_yaml: str | Path | None = None) -> list[Stage]:
    """The stages in dvc.yaml's order; StageError when dvc.yaml and the table differ."""
    listed = dvc_stage_names(dvc_yaml)
    missing = [n for n in names() if n not in listed]
    unknown = [n for n in listed if n not in names()]
    if missing or unknown:
        raise StageError(
            f"{dvc_yaml} and the stage table (tasks/stages.py) differ: "
            + "; ".join(filter(None, [
                f"not in {dvc_yaml}: {missing}" if missing else "",
                f"not in the table: {unknown}" if unknown else "",
            ]))
        )
    return [get(n) for n in listed]
