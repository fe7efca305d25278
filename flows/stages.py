"""Every stage of the stage table (tasks/stages.py) as a Prefect flow, wired one way.

``run_stage(name, ...)`` is what ``msaflow <stage>``, ``dvc repro``'s stage commands and the
whole-pipeline flow call: params loaded once (params.yaml, then ``-S`` overrides), the
stage's work function run as a Prefect task inside the stage's flow (``<stage>-<model>`` for
a stage per model), its summary published as a table and its ``artifacts`` as markdown or
images. A stage that fans out per clip gets a ``map_fn`` that maps its clips as Prefect
tasks on the task runner ``extract.runner`` names (flows/extract.py).
"""

from __future__ import annotations

import functools
import time
from typing import Any

from prefect import Flow, flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import load, publish_artifacts, summary_markdown
from tasks import stages


def _work(stage: stages.Stage, params_path: str, overrides: dict | None,
          model: str | None) -> dict[str, Any]:
    """Load params, run the work function as a task, publish what it returns."""
    params, paths = load(params_path, overrides)
    args: tuple[Any, ...] = (params, paths) if model is None else (params, paths, model)
    kwargs = {}
    if stage.per_clip:
        from flows.extract import clip_mapper

        kwargs["map_fn"] = clip_mapper(params, paths)
    work = task(stage.function(), name=stage.name, cache_policy=NO_CACHE)
    start = time.perf_counter()
    summary = dict(work(*args, **kwargs) or {})
    artifacts = summary.pop("artifacts", {})
    summary["work_seconds"] = round(time.perf_counter() - start, 2)
    title = stage.name if model is None else f"{stage.name}: {model}"
    key = stage.name if model is None else f"{stage.name}-{model}"
    publish_artifacts(key, summary_markdown(title, summary), artifacts)
    print(f"{title}: {summary}")
    return summary


@functools.cache
def stage_flow(name: str) -> Flow:
    """The Prefect flow of stage ``name`` (built once per process)."""
    stage = stages.get(name)
    if stage.per_model:
        @flow(name=stage.name, flow_run_name=f"{stage.name}-{{model}}",
              description=stage.title, log_prints=True)
        def per_model(model: str, params_path: str = "params.yaml",
                      overrides: dict | None = None) -> dict[str, Any]:
            return _work(stage, params_path, overrides, model)

        return per_model

    @flow(name=stage.name, description=stage.title, log_prints=True)
    def once(params_path: str = "params.yaml", overrides: dict | None = None) -> dict[str, Any]:
        return _work(stage, params_path, overrides, None)

    return once


def run_stage(name: str, params_path: str = "params.yaml", overrides: dict | None = None,
              model: str | None = None) -> dict[str, Any]:
    """Run stage ``name`` (of ``model`` for a stage per model) as its flow; its summary."""
    stage = stages.get(name)
    chosen = stage_flow(name)
    if stage.per_clip:  # the clips fan out on the runner params name
        from flows.extract import task_runner

        params, _ = load(params_path, overrides)
        chosen = chosen.with_options(task_runner=task_runner(params.extract))
    if stage.per_model:
        if model is None:
            raise ValueError(f"stage {name!r} runs once per model: name the model")
        return chosen(model, params_path, overrides)
    return chosen(params_path, overrides)
