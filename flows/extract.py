"""The extract stage's clips as Prefect tasks: the runner they go to, and the mapping.

Clips fan out on Prefect's thread pool (``extract.runner: threads``, ``extract.workers``
threads in this process) or on Dask through prefect-dask (``extract.runner: dask``: a local
cluster of ``extract.workers`` single-threaded processes, or the running scheduler at
``extract.dask.address``, whose workers need this project installed and the dataset and
``data/interim`` on a shared filesystem). Either way each clip's features land in the
content-addressed cache and the ``.csd`` files are written here, in manifest order: the same
bytes whichever runner computed them.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prefect import task, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from config.errors import ParamsError
from config.paths import Paths
from config.schema import ExtractParams, Params
from tasks import extract
from tasks.contracts import ExtractionFailed


@task(name="extract-clip", retries=1, retry_delay_seconds=1)
def extract_clip_task(row: dict, cfg: ExtractParams, cache_dir: Path) -> dict:
    """Features of one clip (or its cached copy); failures are reported, not raised."""
    if cfg.runner == "dask":  # on a worker: the threads the stage's own process extracts with
        with extract.single_threaded():
            return extract.extract_clip(row, cfg, cache_dir)
    return extract.extract_clip(row, cfg, cache_dir)


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """A clear error, naming the key, when nothing listens at a tcp:// scheduler address."""
    url = urlparse(address)
    if url.scheme != "tcp" or not url.hostname:
        return  # other protocols (tls://, ucx://, inproc://): Dask's own error will do
    try:
        with socket.create_connection((url.hostname, url.port or 8786), timeout=timeout):
            pass
    except OSError as err:
        raise ParamsError(
            f"extract.dask.address: no Dask scheduler answers at {address} ({err}); start "
            "one (`dask scheduler`, then `dask worker <address>` on each machine) or set "
            "extract.dask.address: '' for a local cluster of extract.workers processes"
        ) from None


def task_runner(cfg: ExtractParams) -> Any:
    """The Prefect task runner ``extract.runner`` names."""
    if cfg.runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask.address:
        check_scheduler(cfg.dask.address)
        return DaskTaskRunner(address=cfg.dask.address)
    # A local cluster's own INFO lines (and the traceback of a comm that closes while it
    # shuts down on a loaded machine) say nothing a user needs: warnings and up only.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": cfg.workers, "threads_per_worker": 1, "processes": True,
        "dashboard_address": None, "silence_logs": logging.WARNING,
    })


def clip_mapper(params: Params, paths: Paths) -> Callable[[list[dict]], list[dict]]:
    """The extract stage's ``map_fn``: its clips as mapped Prefect tasks, a result per row
    (a clip whose task run was lost is recorded failed, not raised)."""
    dask = params.extract.runner == "dask"

    def map_clips(rows: list[dict]) -> list[dict]:
        # Dask workers may run elsewhere (another machine, another working directory):
        # they get absolute paths.
        cache = paths.extract_cache.resolve() if dask else paths.extract_cache
        sent = [dict(r, media=str(Path(r["media"]).resolve())) if dask else r for r in rows]
        futures = extract_clip_task.map(sent, unmapped(params.extract), unmapped(cache))
        results = []
        for row, future in zip(rows, futures, strict=True):
            try:
                results.append(future.result())
            except ExtractionFailed:
                raise  # extract.fail_fast
            except Exception as err:  # the run itself was lost (a worker died twice...)
                results.append(extract.lost_clip(row, f"not extracted: {type(err).__name__}: "
                                                      f"{err}"))
        return results

    return map_clips
