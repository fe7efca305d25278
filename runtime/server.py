"""The one local Prefect server every msaflow command shares: started on first use, reused.

A command that runs a flow needs a Prefect API. Without one Prefect starts a temporary server
inside every process (seconds each, API only, gone with the process and its runs' history).
Instead, the first command that needs a server starts ``prefect server start`` on a free
local port, detached from the command, and records it in
``<PREFECT_HOME>/msaflow-server.json``; every later command (a stage under ``dvc repro``,
``msaflow predict``...) finds it there and uses it, so its UI holds every run.
``msaflow server stop`` ends it (``status``, ``start``: the rest of the verbs).

A server named by the user wins: ``PREFECT_API_URL`` in the environment or set in the active
Prefect profile (``make ui``, Prefect Cloud). ``PREFECT_HOME`` decides which recorded server
a command sees, so a test session or a second project can keep its own.

This module imports neither Prefect nor httpx at the top: a command that only parses its
arguments or validates params pays nothing for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

LOG_MAX_BYTES = 10 * 2**20
START_TIMEOUT = 180.0  # a loaded 2-core machine can take a minute to start it


class ServerError(RuntimeError):
    """The shared server could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class Server:
    """A running server msaflow started: its process and address."""

    pid: int
    port: int
    started: str

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.address}/api"


def home() -> Path:
    """Prefect's home folder (``PREFECT_HOME``, else ``~/.prefect``), read without Prefect."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def state_file() -> Path:
    """Where the shared server is recorded."""
    return home() / "msaflow-server.json"


def log_file() -> Path:
    """The shared server's own output (not the pipeline's)."""
    return home() / "msaflow-server.log"


def user_api_url() -> str | None:
    """The API the user named: ``PREFECT_API_URL`` in the environment, else in the active
    Prefect profile (``prefect config set PREFECT_API_URL=...``); None when neither."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    profiles = home() / "profiles.toml"
    if not profiles.is_file():
        return None
    import tomllib

    try:
        doc = tomllib.loads(profiles.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or doc.get("active", "ephemeral")
    url = (doc.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL")
    return str(url) if url else None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:  # our own child that exited: reap it (a zombie would still take signal 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded() -> Server | None:
    """The server the state file names, if its process still runs."""
    try:
        server = Server(**json.loads(state_file().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return server if _alive(server.pid) else None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One command at a time decides whether to start the server (two stages at once must
    not start two)."""
    lock = home() / "msaflow-server.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn() -> Server:
    """Start ``prefect server start`` detached (its own session: it outlives the command
    and a Ctrl-C of it) on a free port; record it."""
    log = log_file()
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.is_file() and log.stat().st_size > LOG_MAX_BYTES:
        log.replace(log.with_suffix(".log.1"))
    port = _free_port()
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    with open(log, "a") as out:
        out.write(f"\n=== msaflow: prefect server start on 127.0.0.1:{port} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        out.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port), "--analytics-off"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, close_fds=True,
        )
    server = Server(pid=process.pid, port=port, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    tmp = state_file().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(server)) + "\n", encoding="utf-8")
    os.replace(tmp, state_file())
    return server


def start() -> tuple[Server, bool]:
    """The shared server, started now if none runs (not waiting for it to answer); and
    whether this call started it."""
    with _locked():
        server = recorded()
        if server is not None:
            return server, False
        return _spawn(), True


def wait(server: Server, timeout: float = START_TIMEOUT) -> None:
    """Block until ``server`` answers; ServerError (with its log's tail) when it exits or
    does not answer in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(server.api_url, timeout=1.0):
            return
        if not _alive(server.pid):
            break
        time.sleep(0.1)
    why = "did not answer" if _alive(server.pid) else "exited"
    stop()  # what is left of it, and its record: the next command starts afresh
    tail = log_file().read_text(errors="replace")[-1500:] if log_file().is_file() else ""
    raise ServerError(
        f"the local Prefect server on port {server.port} {why} within {timeout:.0f} s (its "
        f"log: {log_file()}):\n{tail}\nStart one yourself (`make ui`) and export "
        "PREFECT_API_URL=http://127.0.0.1:4200/api, or set PREFECT_API_URL to a running server."
    )


def current_api_url() -> str | None:
    """The API this process reports to when it is not the shared server's: the user's
    (environment, profile), or, once Prefect is imported, its own settings' (a flow run's
    server, a test harness's); None otherwise."""
    url = user_api_url()
    if url is None and "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value() or None
    return url


def ensure(timeout: float = START_TIMEOUT) -> str:
    """The API URL flows report to: the current one (``current_api_url``), else the shared
    server's, started on first use and waited for. The caller hands it to the processes it
    starts (``PREFECT_API_URL``)."""
    url = current_api_url()
    if url is None:
        server, started = start()
        if started:
            print(f"Prefect server started for msaflow: {server.address} (UI and API; kept "
                  f"for later commands; `msaflow server stop` ends it)", file=sys.stderr)
        wait(server, timeout)
        url = server.api_url
    return url


def stop(grace: float = 15.0) -> Server | None:
    """Stop the shared server (SIGINT, then SIGKILL); the one stopped, or None."""
    with contextlib.suppress(OSError):
        server = recorded()
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGINT)
            deadline = time.monotonic() + grace
            while _alive(server.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(server.pid, os.WNOHANG)
            if _alive(server.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
        state_file().unlink(missing_ok=True)
        return server
    return None
