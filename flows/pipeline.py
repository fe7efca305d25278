"""The whole DAG as one Prefect flow run, a subflow per stage (same outputs as `dvc repro`).

`python -m flows.pipeline` (= `msaflow run`) runs it on the server named by
``PREFECT_API_URL``, else on a local server with its UI for the run (address printed). With
``record`` (the default) it ends with ``dvc commit`` so DVC's ledger (dvc.lock) knows the
artifacts and a following ``dvc repro`` has nothing to do.

``overrides`` (``-S key=value`` on the command line, a JSON object in the Prefect UI) change
params for this run only, as ``dvc exp run -S`` does, e.g. another dataset:
``python -m flows.pipeline -S dataset.name=meld -S dataset.root=/data/MELD.Raw``. params.yaml
is left as it is, so such a run is not recorded in dvc.lock (which describes params.yaml);
use ``dvc exp run -S ...`` to have DVC version it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from typing import Any

from prefect import flow

from flows.cache import cache_flow
from flows.common import load, prefect_server
from flows.demo import demo_flow
from flows.evaluate import evaluate_flow, report_flow
from flows.extract import extract_flow
from flows.ingest import ingest_flow
from flows.train import train_flow
from msaflow.overrides import describe, parse_assignments
from msaflow.params import ParamsError


@flow(name="msaflow-pipeline", log_prints=True)
def pipeline(
    params_path: str = "params.yaml",
    record: bool = True,
    overrides: dict[str, Any] | None = None,
) -> str:
    """demo → ingest → extract → cache → train × models → evaluate × models → report."""
    params, paths = load(params_path, overrides)
    over = overrides or None
    if over:
        print(f"params: {params_path} with {describe(over)} (dataset {params.dataset.name})")
    if paths.raw_root.resolve() == paths.demo_root.resolve():
        demo_flow(params_path, over)
    ingest_flow(params_path, over)
    runner = _thread_runner(params.extract.workers)
    extract_flow.with_options(task_runner=runner)(params_path, over)
    cache_flow(params_path, over)
    for model in params.train.models:
        train_flow(model, params_path, over)
        evaluate_flow(model, params_path, over)
    table = report_flow(params_path, over)
    if record and over:
        print("not recorded in dvc.lock: this run's params differ from params.yaml "
              f"({describe(over)}); `dvc exp run` with the same -S versions such a run")
    elif record:
        record_in_dvc()
    return table


def _thread_runner(workers: int):
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=workers)


def record_in_dvc() -> None:
    """Record the artifacts this run made in dvc.lock (so `dvc repro` sees them as done)."""
    dvc = shutil.which("dvc")
    if dvc is None:
        print("dvc not on PATH: artifacts written but not recorded in dvc.lock")
        return
    result = subprocess.run([dvc, "commit", "--force", "--quiet"], check=False)
    if result.returncode != 0:
        print(f"dvc commit exited {result.returncode}: dvc.lock not updated")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m flows.pipeline [--params P] [--no-record]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--no-record", action="store_true", help="skip `dvc commit`")
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a param for this run (repeatable)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_assignments(args.overrides)
    except ParamsError as err:
        parser.error(str(err))
    with prefect_server():  # the one named by PREFECT_API_URL, else a local one with its UI
        pipeline(args.params, record=not args.no_record, overrides=overrides or None)


if __name__ == "__main__":
    main()
