"""Champion / challenger: decisions, atomic promotion, the flow, the --serve arguments."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from config.paths import Paths
from tasks import retrain
from tasks.io import write_json_atomic
from tasks.params import load_params

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"
MODEL = "unimodal_text"


def write_challenger(
    base: Path, model: str, valid: dict, test: dict | None = None, ckpt: bytes = b"new",
    seeds: tuple[int, ...] = (0, 1), dataset: str = "demo", lock_md5: str | None = None,
) -> None:
    """Fabricate what `dvc repro` leaves: metrics.json, seed<k>.ckpt files, a dvc.lock."""
    report = base / "reports" / dataset / model
    write_json_atomic(report / "metrics.json", {"valid": valid, "test": test or {}, "seeds": 2})
    ckpts = base / "data" / "checkpoints" / dataset / model
    ckpts.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (ckpts / f"seed{s}.ckpt").write_bytes(ckpt + f"-{s}".encode())
    if lock_md5 is not None:
        lock = {"schema": "2.0", "stages": {f"train@{model}": {"outs": [
            {"path": f"data/checkpoints/{dataset}/{model}", "md5": lock_md5}]}}}
        (base / "dvc.lock").write_text(json.dumps(lock))


@pytest.fixture()
def setup(tmp_path: Path):
    params = load_params(PARAMS, {"train.seeds": [0, 1], "dataset.task": "regression"})
    paths = Paths(dataset="demo", raw_root=tmp_path / "raw", base=tmp_path)
    return params, paths


def run(params, paths, min_delta: float = 0.0) -> retrain.Decision:
    champions = retrain.read_champions(paths, [MODEL])
    (decision,) = retrain.compare_and_promote(params, paths, champions, min_delta)
    return decision


def champ(paths: Paths) -> Path:
    return paths.champion(MODEL)


# -- decisions ---------------------------------------------------------------------------


def test_first_run_promotes(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.9, "MAE_std": 0.1}, {"MAE": 0.8},
                     lock_md5="abc.dir")
    d = run(params, paths)
    assert d.promote and d.champion is None and d.challenger == 0.9 and d.challenger_test == 0.8
    record = json.loads((champ(paths) / "champion.json").read_text())
    assert record["metric"] == "MAE" and record["mode"] == "min" and record["value"] == 0.9
    assert record["checkpoint_hash"] == "abc.dir" and record["split"] == "valid"
    assert record["metrics"]["valid"]["MAE_std"] == 0.1
    assert (champ(paths) / "seed0.ckpt").read_bytes() == b"new-0"
    assert sorted(record["checkpoints"]) == ["seed0.ckpt", "seed1.ckpt"]
    assert not (champ(paths) / "previous").exists()


def test_better_promotes_and_keeps_previous(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.9}, ckpt=b"old")
    run(params, paths)
    write_challenger(paths.base, MODEL, {"MAE": 0.7}, ckpt=b"new")
    d = run(params, paths)
    assert d.promote and d.champion == 0.9 and d.challenger == 0.7
    assert (champ(paths) / "seed1.ckpt").read_bytes() == b"new-1"
    prev = retrain.read_champion(champ(paths) / "previous")
    assert prev["value"] == 0.9
    assert (champ(paths) / "previous" / "seed1.ckpt").read_bytes() == b"old-1"
    # one level only: a third promotion drops the first champion
    write_challenger(paths.base, MODEL, {"MAE": 0.5}, ckpt=b"third")
    assert run(params, paths).promote
    assert retrain.read_champion(champ(paths) / "previous")["value"] == 0.7
    assert not (champ(paths) / "previous" / "previous").exists()
    # roll back: the previous champion is served again (and the undone one becomes previous)
    retrain.roll_back(champ(paths))
    assert retrain.read_champion(champ(paths))["value"] == 0.7
    assert (champ(paths) / "seed0.ckpt").read_bytes() == b"new-0"
    assert retrain.read_champion(champ(paths) / "previous")["value"] == 0.5


def test_worse_keeps_champion_and_test_is_ignored(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.7}, {"MAE": 0.9}, ckpt=b"old")
    run(params, paths)
    # worse on valid, much better on test: test never decides
    write_challenger(paths.base, MODEL, {"MAE": 0.8}, {"MAE": 0.1}, ckpt=b"new")
    d = run(params, paths)
    assert not d.promote and d.champion == 0.7 and d.challenger_test == 0.1
    assert (champ(paths) / "seed0.ckpt").read_bytes() == b"old-0"
    assert not (champ(paths) / "previous").exists()


def test_classification_direction(tmp_path):
    params = load_params(PARAMS, {"train.seeds": [0, 1], "dataset.task": "classification"})
    paths = Paths(dataset="demo", raw_root=tmp_path / "raw", base=tmp_path)
    write_challenger(tmp_path, MODEL, {"F1_weighted": 0.6, "Acc": 0.7})
    assert run(params, paths).promote
    write_challenger(tmp_path, MODEL, {"F1_weighted": 0.5, "Acc": 0.9})
    d = run(params, paths)
    assert not d.promote and d.metric == "F1_weighted" and d.mode == "max"
    write_challenger(tmp_path, MODEL, {"F1_weighted": 0.65})
    assert run(params, paths).promote


def test_min_delta():
    champion = {"metric": "MAE", "mode": "min", "value": 1.0}
    assert not retrain.decide("m", "MAE", "min", champion, {"valid": 0.95}, 0.05).promote
    assert retrain.decide("m", "MAE", "min", champion, {"valid": 0.94}, 0.05).promote
    assert not retrain.decide("m", "MAE", "min", champion, {"valid": 1.0}, 0.0).promote
    high = {"metric": "F1_weighted", "mode": "max", "value": 0.5}
    assert not retrain.decide("m", "F1_weighted", "max", high, {"valid": 0.6}, 0.1).promote
    assert retrain.decide("m", "F1_weighted", "max", high, {"valid": 0.61}, 0.1).promote
    with pytest.raises(ValueError, match="min_delta"):
        retrain.decide("m", "MAE", "min", champion, {"valid": 0.5}, -0.1)


def test_nan_challenger_and_unchanged_checkpoints_are_kept():
    champion = {"metric": "MAE", "mode": "min", "value": 1.0, "checkpoint_hash": "h.dir"}
    assert not retrain.decide("m", "MAE", "min", None, {"valid": None}).promote
    same = retrain.decide("m", "MAE", "min", champion, {"valid": 0.5}, 0.0, "h.dir")
    assert not same.promote and "same checkpoints" in same.reason


def test_corrupted_champion_json_names_the_file(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.9})
    run(params, paths)
    path = champ(paths) / "champion.json"
    path.write_text("{not json")
    with pytest.raises(retrain.ChampionError, match=str(path)):
        retrain.read_champions(paths, [MODEL])
    path.write_text(json.dumps({"model": MODEL, "metric": "MAE", "mode": "min",
                                "value": "bad", "checkpoints": {"seed0.ckpt": "x"}}))
    with pytest.raises(retrain.ChampionError, match="'value' must be a finite number"):
        retrain.read_champion(champ(paths))


def test_tampered_checkpoint_is_detected(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.9})
    run(params, paths)
    (champ(paths) / "seed1.ckpt").write_bytes(b"changed")
    with pytest.raises(retrain.ChampionError, match="seed1.ckpt: SHA-256 differs"):
        retrain.read_champion(champ(paths))


def test_missing_challenger_metric_names_file_and_key(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"Corr": 0.3})
    with pytest.raises(ValueError, match=r"metrics\.json: valid\.MAE missing"):
        run(params, paths)


def test_failure_mid_copy_leaves_old_champion_intact(setup, monkeypatch):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.9}, ckpt=b"old")
    run(params, paths)
    before = {p.name: p.read_bytes() for p in champ(paths).iterdir()}
    write_challenger(paths.base, MODEL, {"MAE": 0.5}, ckpt=b"new")
    real = retrain._copy_file
    calls = []

    def flaky(src: Path, dst: Path) -> None:
        calls.append(src)
        if len(calls) == 2:  # the first seed is copied, the second fails half-way
            dst.write_bytes(b"half")
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(retrain, "_copy_file", flaky)
    with pytest.raises(OSError, match="disk full"):
        run(params, paths)
    assert {p.name: p.read_bytes() for p in champ(paths).iterdir()} == before
    assert retrain.read_champion(champ(paths))["value"] == 0.9
    assert [p.name for p in champ(paths).parent.iterdir()] == [MODEL]  # no temp dir left


def test_interrupted_swap_is_recovered(setup):
    params, paths = setup
    write_challenger(paths.base, MODEL, {"MAE": 0.9})
    run(params, paths)
    # a crash between the two renames: the old champion set aside, nothing in its place
    champ(paths).rename(champ(paths).parent / f".{MODEL}.old-x1")
    assert retrain.read_champion(champ(paths))["value"] == 0.9


def test_dvc_lock_hash(tmp_path):
    write_challenger(tmp_path, MODEL, {"MAE": 1.0}, lock_md5="f00.dir")
    lock = tmp_path / "dvc.lock"
    assert retrain.dvc_lock_hash(lock, Path(f"data/checkpoints/demo/{MODEL}")) == "f00.dir"
    assert retrain.dvc_lock_hash(lock, Path("data/checkpoints/demo/other")) is None
    assert retrain.dvc_lock_hash(tmp_path / "none.lock", Path("x")) is None


def test_markdown_table_lists_each_model():
    d = retrain.decide("m", "MAE", "min", None, {"valid": 0.5, "test": 0.6})
    table = retrain.decisions_markdown("demo", [d])
    assert "| m | MAE ↓ | — | 0.5000 | — | 0.6000 | **promoted**: no champion yet |" in table


# -- the flow and its deployment -----------------------------------------------------------


@pytest.mark.slow  # starts a Prefect test server (~20 s)
def test_flow_with_fake_repro(tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    import flows.retrain as flow_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    values = iter([0.9, 0.8, 0.85])
    seen = []

    popen, which = subprocess.Popen, shutil.which

    class FakeDvc:
        """The `dvc repro` process: writes a challenger (or fails), prints nothing."""

        def __init__(self, args: list[str], env: dict) -> None:
            url = env.get("PREFECT_API_URL")
            seen.append((args[1:], bool(url) and url == harness_url()))
            self.pid, self.stdout = -1, io.StringIO("")
            self.returncode = 1 if "fail" in args else 0
            if self.returncode == 0:
                value = next(values)
                write_challenger(tmp_path, MODEL, {"MAE": value}, {"MAE": value},
                                 ckpt=f"v{value}".encode(), lock_md5=f"{value}.dir")

        def wait(self, timeout: float | None = None) -> int:
            return self.returncode

        poll = wait

    def fake_popen(args, *rest, **kwargs):
        # The real msaflow.cli.repro runs; only the `dvc repro` process is faked. The stages
        # it starts must report to the flow's own server: the URL is in their environment.
        if args[0] != "fake-dvc":
            return popen(args, *rest, **kwargs)
        return FakeDvc(list(args), kwargs["env"])

    def harness_url() -> str | None:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value()

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    monkeypatch.setattr(shutil, "which", lambda name: "fake-dvc" if name == "dvc" else which(name))
    with prefect_test_harness(server_startup_timeout=120):
        first = flow_module.retrain_flow("params.yaml", models=[MODEL])
        second = flow_module.retrain_flow("params.yaml", min_delta=0.05, models=[MODEL])
        third = flow_module.retrain_flow("params.yaml", models=[MODEL], dvc_args=["-f"])
        with pytest.raises(RuntimeError, match="exited 1; nothing promoted"):
            flow_module.retrain_flow("params.yaml", models=[MODEL], dvc_args=["fail"])
    assert [r[0]["promote"] for r in (first, second, third)] == [True, True, False]
    assert second[0]["champion"] == 0.9 and second[0]["challenger"] == 0.8
    assert seen == [(["repro"], True), (["repro"], True), (["repro", "-f"], True),
                    (["repro", "fail"], True)]
    assert "PREFECT_API_URL" not in os.environ
    record = retrain.read_champion(tmp_path / "data" / "champions" / "demo" / MODEL)
    assert record["value"] == 0.8 and record["checkpoint_hash"] == "0.8.dir"
    assert (tmp_path / "data" / "champions" / "demo" / MODEL / "seed0.ckpt").read_bytes() == (
        b"v0.8-0"
    )


def test_serve_arguments_build_the_schedule():
    from flows.retrain import flow_parameters, serve_kwargs
    from msaflow.cli import DEFAULT_CRON, build_parser

    def kwargs_of(argv: list[str]) -> dict:
        args = build_parser().parse_args(["retrain", *argv])
        parameters = flow_parameters(args.params, args.min_delta, args.models)
        return serve_kwargs(args.cron, args.name, parameters)

    kwargs = kwargs_of(["--serve"])
    assert kwargs["cron"] == DEFAULT_CRON == "0 3 * * 1" and kwargs["name"] == "weekly"
    assert kwargs["parameters"] == {"params_path": "params.yaml", "min_delta": 0.0,
                                    "models": None}
    assert kwargs["limit"] == 1
    kwargs = kwargs_of(["--serve", "--cron", "30 2 * * *", "--name", "nightly",
                        "--min-delta", "0.01", "--model", MODEL])
    assert (kwargs["cron"], kwargs["name"]) == ("30 2 * * *", "nightly")
    assert kwargs["parameters"]["min_delta"] == 0.01 and kwargs["parameters"]["models"] == [MODEL]
    with pytest.raises(ValueError, match="not a valid cron"):
        kwargs_of(["--serve", "--cron", "every monday"])


@pytest.mark.slow  # starts a Prefect server (~10 s) in a served process
def test_serve_alone_registers_the_scheduled_deployment(tmp_path):
    """`msaflow retrain --serve` with no server running: it starts the shared one (UI and
    scheduler), registers the cron deployment there, and stops serving on Ctrl-C; the
    server stays for later commands until `msaflow server stop`."""
    import asyncio
    import queue
    import re
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time

    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", PREFECT_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "msaflow", "retrain", "--serve", "--cron", "30 2 * * *",
         "--name", "nightly", "--model", MODEL],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    seen, address, deadline = [], None, time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            found = re.search(r"Prefect server started for msaflow: (http://\S+)", seen[-1])
            address = address or (found and found.group(1))
            if address and "being served" in "".join(seen):
                break
        assert address and proc.poll() is None, "".join(seen)[-3000:]

        async def deployment():
            from prefect.client.orchestration import get_client

            async with get_client(httpx_settings={"base_url": f"{address}/api"}) as client:
                return await client.read_deployment_by_name("retrain/nightly")

        os.environ["PREFECT_API_URL"] = f"{address}/api"
        try:
            found = asyncio.run(deployment())
        finally:
            os.environ.pop("PREFECT_API_URL", None)
        assert [s.schedule.cron for s in found.schedules] == ["30 2 * * *"]
        assert all(s.active for s in found.schedules)
        assert found.parameters == {"params_path": "params.yaml", "min_delta": 0.0,
                                    "models": [MODEL]}
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the deployment stops serving
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            stop = subprocess.run([sys.executable, "-m", "msaflow", "server", "stop"],
                                  cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "stopped the Prefect server" in stop.stdout
    port = int(address.rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # `msaflow server stop` ended it


def test_roll_back_command(tmp_path, monkeypatch, capsys):
    from msaflow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    params = load_params(tmp_path / "params.yaml")
    paths = Paths.from_params(params)
    assert main(["retrain", "--roll-back", MODEL]) == 1
    assert "ChampionError: " in capsys.readouterr().err  # "no previous champion ..."
    for value in (0.9, 0.7):
        write_challenger(Path("."), MODEL, {"MAE": value}, ckpt=f"v{value}".encode(),
                         seeds=params.train.seeds)
        run(params, paths)
    assert main(["retrain", "--roll-back", MODEL]) == 0
    assert "champion is again MAE 0.9000" in capsys.readouterr().out
    assert (champ(paths) / "seed0.ckpt").read_bytes() == b"v0.9-0"


def test_cli_retrain_refuses_overrides(capsys):
    from msaflow.cli import main

    assert main(["retrain", "-S", "train.lr=0.1"]) == 2
    assert "dvc exp run" in capsys.readouterr().err
