"""The local Prefect server every msaflow command shares: started on first use, reused by the
next commands, stopped by `msaflow server stop`; a server the user names wins."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runtime import server

ROOT = Path(__file__).resolve().parents[2]
MSAFLOW = Path(sys.executable).parent / "msaflow"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def _msaflow(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(MSAFLOW), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow  # starts a second server (the session has one)
def test_first_use_starts_it_later_commands_reuse_it_stop_ends_it(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    env = _env(home)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    try:
        first = _msaflow(["report"], tmp_path, env)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "Prefect server started for msaflow: http://127.0.0.1:" in first.stderr
        assert "Starting temporary server" not in first.stdout + first.stderr
        state = json.loads((home / "msaflow-server.json").read_text())
        address = f"http://127.0.0.1:{state['port']}"
        assert httpx.get(f"{address}/api/health").json() is True
        page = httpx.get(f"{address}/")  # what a person opens in a browser
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

        again = _msaflow(["report"], tmp_path, env)  # reuses it: no second server
        assert again.returncode == 0, again.stderr[-3000:]
        assert "Prefect server started" not in again.stderr
        assert json.loads((home / "msaflow-server.json").read_text()) == state
        status = _msaflow(["server", "status"], tmp_path, env)
        assert f"{address} (pid {state['pid']}" in status.stdout and "answers" in status.stdout
    finally:
        stopped = _msaflow(["server", "stop"], tmp_path, env)
    assert stopped.returncode == 0 and f"stopped the Prefect server on {address}" in stopped.stdout
    assert not (home / "msaflow-server.json").exists()
    with socket.socket() as sock:  # nothing listens any more
        assert sock.connect_ex(("127.0.0.1", state["port"])) != 0
    gone = _msaflow(["server", "status"], tmp_path, env)
    assert "no msaflow Prefect server runs" in gone.stdout


def test_a_named_server_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert server.user_api_url() == "http://127.0.0.1:4200/api"
    assert server.ensure() == "http://127.0.0.1:4200/api"
    assert not (tmp_path / "msaflow-server.json").exists()  # nothing started


def test_a_server_in_the_active_profile_is_used(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`prefect config set PREFECT_API_URL=...` writes the profile, not the environment."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    (tmp_path / "profiles.toml").write_text(
        'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n')
    assert server.user_api_url() == "http://10.0.0.5:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert server.user_api_url() is None


def test_in_process_flows_report_to_the_shared_server() -> None:
    from prefect import flow

    @flow
    def where() -> str:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return str(client.api_url)

    assert where().rstrip("/") == os.environ["PREFECT_API_URL"].rstrip("/")


@pytest.mark.slow  # waits for the server to give up
def test_a_server_that_cannot_start_is_one_error_line(tmp_path: Path) -> None:
    # a database the server cannot open: it exits during startup
    env = _env(tmp_path / "prefect",
               PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:////proc/no/x.db")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    done = _msaflow(["report"], tmp_path, env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error: the local Prefect server on port" in done.stderr
    assert "exited" in done.stderr and "msaflow-server.log" in done.stderr
    assert "make ui" in done.stderr
    assert not (tmp_path / "prefect" / "msaflow-server.json").exists()


@pytest.mark.slow  # a stage process killed mid-run
def test_a_killed_stage_leaves_no_process_of_its_own(tmp_path: Path) -> None:
    """SIGKILL of a stage: no server or other child of it outlives it (the shared server is
    not its child: it was started detached by the first command and stays for the next)."""
    env = _env(Path(os.environ["PREFECT_HOME"]), PREFECT_API_URL=os.environ["PREFECT_API_URL"])
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    proc = subprocess.Popen([str(MSAFLOW), "report"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    for line in proc.stdout:  # a known point: its flow run has begun
        if "Beginning flow run" in line:
            break
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                              text=True).stdout.split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert left == [], f"children of the killed stage still run: {left}"
    assert server.healthy(os.environ["PREFECT_API_URL"])  # the shared server is unharmed


def test_the_cli_gives_prefect_its_offline_defaults() -> None:
    code = ("from config import environment; environment.apply(); "
            "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s,"
            " PREFECT_SERVER_ANALYTICS_ENABLED as a; print(s.value(), a.value())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["180", "False"], out.stderr[-1000:]
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "30"  # a user's own value wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split()[0] == "30"
