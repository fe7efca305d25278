"""The whole DAG as one Prefect flow run, a subflow per stage (same outputs as `dvc repro`).

`msaflow run` (= `python -m flows.pipeline`) runs it on the server named by
``PREFECT_API_URL``, else on a local server with its UI for the run (address printed). With
``record`` (the default) it ends with ``dvc commit`` so DVC's ledger (dvc.lock) knows the
artifacts and a following ``dvc repro`` has nothing to do.

``overrides`` (``-S key=value`` on the command line, a JSON object in the Prefect UI) change
params for this run only, as ``dvc exp run -S`` does, e.g. another dataset:
``msaflow run -S dataset.name=meld -S dataset.root=/data/MELD.Raw``. params.yaml
is left as it is, so such a run is not recorded in dvc.lock (which describes params.yaml);
use ``dvc exp run -S ...`` to have DVC version it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.cache import cache_flow
from flows.common import load, run_cli
from flows.demo import demo_flow
from flows.evaluate import evaluate_flow, report_flow
from flows.extract import run as extract_run
from flows.ingest import ingest_flow
from flows.repro import record_in_dvc
from flows.robustness import robustness_flow
from flows.train import train_flow
from msaflow.overrides import describe


@flow(name="msaflow-pipeline", log_prints=True)
def pipeline(
    params_path: str = "params.yaml",
    record: bool = True,
    overrides: dict[str, Any] | None = None,
) -> str:
    """demo → ingest → extract → cache → train, evaluate, robustness × models → report."""
    params, paths = load(params_path, overrides)
    over = overrides or None
    if over:
        print(f"params: {params_path} with {describe(over)} (dataset {params.dataset.name})")
    if paths.raw_root.resolve() == paths.demo_root.resolve():
        demo_flow(params_path, over)
    ingest_flow(params_path, over)
    extract_run(params_path, over)
    cache_flow(params_path, over)
    for model in params.train.models:
        train_flow(model, params_path, over)
        evaluate_flow(model, params_path, over)
        robustness_flow(model, params_path, over)
    table = report_flow(params_path, over)
    if record and over:
        print("not recorded in dvc.lock: this run's params differ from params.yaml "
              f"({describe(over)}); `dvc exp run` with the same -S versions such a run")
    elif record:
        record_in_dvc()
    return table


if __name__ == "__main__":
    run_cli("run")
