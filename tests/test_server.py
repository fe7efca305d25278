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
    printed = capsys.readouterr().out
    assert f"Prefect server for this run: {address} (UI and API" in printed
    assert "msaflow-server.log" in printed  # the server's own output goes there
    assert "PREFECT_API_URL" not in os.environ
    port = int(address.rsplit(":", 1)[1])
    with socket.socket() as sock:  # the server process is gone: nothing listens any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


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


def test_a_server_that_cannot_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # a database the server cannot open: it exits during startup
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:////proc/no/x.db")
    expected = r"exited with code .*msaflow-server\.log(.|\n)*make ui"
    with pytest.raises(RuntimeError, match=expected), prefect_server(start_timeout=60):
        pass
    assert "PREFECT_API_URL" not in os.environ
