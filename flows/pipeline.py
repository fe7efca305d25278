"""The whole DAG as one Prefect flow run, a subflow per stage (same outputs as `dvc repro`).

The stages run in dvc.yaml's order (tasks/stages.py reads it), a stage per model once per
model of ``train.models``; a stage whose ``needed`` says no (the demo corpus for another
dataset) is skipped. ``msaflow run`` runs it on the shared Prefect server. With ``record``
(the default) it ends with ``dvc commit`` so DVC's ledger (dvc.lock) knows the artifacts and
a following ``dvc repro`` has nothing to do.

``overrides`` (``-S key=value`` on the command line, a JSON object in the Prefect UI) change
params for this run only, as ``dvc exp run -S`` does, e.g. another dataset:
``msaflow run -S dataset.name=meld -S dataset.root=/data/MELD.Raw``. params.yaml
is left as it is, so such a run is not recorded in dvc.lock (which describes params.yaml);
use ``msaflow exp -S ...`` to have DVC version it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from config.overrides import describe
from flows.common import load
from flows.stages import run_stage
from runtime.dvc import record_in_dvc
from tasks import stages


def plan(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None,
         dvc_yaml: str | None = None) -> list[tuple[str, str | None]]:
    """(stage, model or None) in the order the pipeline runs them."""
    params, paths = load(params_path, overrides)
    steps: list[tuple[str, str | None]] = []
    for stage in stages.order(dvc_yaml):
        if not stage.is_needed(params, paths):
            continue
        models = params.train.models if stage.per_model else (None,)
        steps += [(stage.name, model) for model in models]
    return steps


@flow(name="msaflow-pipeline", log_prints=True)
def pipeline(
    params_path: str = "params.yaml",
    record: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every stage of dvc.yaml, in its order, each as its flow; the last stage's summary."""
    over = overrides or None
    if over:
        params, _ = load(params_path, over)
        print(f"params: {params_path} with {describe(over)} (dataset {params.dataset.name})")
    summary: dict[str, Any] = {}
    for name, model in plan(params_path, over):
        summary = run_stage(name, params_path, over, model)
    if record and over:
        print("not recorded in dvc.lock: this run's params differ from params.yaml "
              f"({describe(over)}); `msaflow exp` with the same -S versions such a run")
    elif record:
        record_in_dvc()
    return summary
