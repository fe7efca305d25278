"""The local Prefect server `msaflow repro` shares between stages: API and UI, then gone."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from flows.common import prefect_server


def test_local_server_serves_api_and_ui_then_stops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with prefect_server() as api_url:
        assert os.environ["PREFECT_API_URL"] == api_url
        address = api_url.removesuffix("/api")
        assert httpx.get(f"{api_url}/health").json() is True
        page = httpx.get(f"{address}/")  # what a person opens in a browser
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        # A flow run in this process (`msaflow run`) uses this server too, not a second,
        # temporary one of Prefect's.
        assert _flow_api_url().rstrip("/") == api_url
    printed = capsys.readouterr().out
    assert f"Prefect server for this run: {address} (UI and API" in printed
    assert "msaflow-server.log" in printed  # the server's own output goes there
    assert "PREFECT_API_URL" not in os.environ
    port = int(address.rsplit(":", 1)[1])
    with socket.socket() as sock:  # the server process is gone: nothing listens any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def _flow_api_url() -> str:
    from prefect import flow

    @flow
    def where() -> str:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return str(client.api_url)

    return where()


def test_a_named_server_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    with prefect_server() as api_url:
        assert api_url == "http://127.0.0.1:4200/api"
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"


def test_a_configured_server_is_used_and_shared_with_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`prefect config set PREFECT_API_URL=...` (a profile, not the environment) is honoured,
    and exported while the block runs so `dvc repro`'s stage processes report there too."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    url = "http://127.0.0.1:4301/api"
    with temporary_settings({PREFECT_API_URL: url}), prefect_server() as api_url:
        assert api_url == url and os.environ["PREFECT_API_URL"] == url
    assert "PREFECT_API_URL" not in os.environ


@pytest.mark.slow  # waits for the server to give up
def test_a_server_that_cannot_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # a database the server cannot open: it exits during startup
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:////proc/no/x.db")
    expected = r"exited with code .*msaflow-server\.log(.|\n)*make ui"
    with pytest.raises(RuntimeError, match=expected), prefect_server(start_timeout=60):
        pass
    assert "PREFECT_API_URL" not in os.environ


SLOW_START = '''
import os
import time

# A busy machine: the temporary server's own process (Prefect starts it with this variable)
# takes 25 s before it even imports uvicorn. Nothing is imported here, so the CLI still
# applies its defaults before Prefect reads its settings.
if os.environ.get("PREFECT__SERVER_EPHEMERAL") == "1":
    time.sleep(25)
'''


@pytest.mark.slow  # waits out a 25 s server start
def test_a_stage_survives_a_slow_temporary_server(tmp_path) -> None:
    """A plain `dvc repro` stage starts Prefect's temporary server; Prefect gives it 20 s by
    default. A stage run through the CLI waits up to 180 s, so a slow start is no failure."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(SLOW_START)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "hooks"), str(root)]),
               PREFECT_HOME=str(tmp_path / "prefect"))
    msaflow = Path(sys.executable).parent / "msaflow"
    done = subprocess.run([str(msaflow), "report"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "reports" / "summary_demo.md").is_file()
    assert "Timed out" not in done.stderr


def test_the_cli_gives_prefect_its_offline_defaults() -> None:
    import subprocess
    import sys

    code = ("from msaflow import environment; environment.apply(); "
            "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s,"
            " PREFECT_SERVER_ANALYTICS_ENABLED as a; print(s.value(), a.value())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["180", "False"], out.stderr[-1000:]
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "30"  # a user's own value wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split()[0] == "30"
