"""The HTML results report in a real browser: headless Chromium (Debian's package; `make test`
installs it where it can) opens the tiny demo's report with every request routed to a proxy
that only counts: the DOM holds each model's sections and pictures, the screenshot is not
blank, and no request leaves the machine."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.e2e import TINY, TinyDemo

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own services, which it calls whatever page it shows (component updates, the
# network clock, sign-in): not the page's requests. Exact hosts, so a font or script from
# any other Google host would still count.
BROWSER_OWN = {"update.googleapis.com", "accounts.google.com", "clients2.google.com"}


def _host(request_line: str) -> str:
    """The host a proxied request line names (``CONNECT h:443``, ``GET http://h/...``)."""
    target = request_line.split(" ")[1] if " " in request_line else ""
    return target.removeprefix("http://").removeprefix("https://").split("/")[0] \
        .rsplit(":", 1)[0]


class CountingProxy:
    """A local listener standing in for the network: each connection is counted (and its
    first line kept), none is answered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    first = "(no request line)"
                self.requests.append(first)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _chromium(args: list[str], proxy: CountingProxy, profile: Path) -> str:
    command = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--disable-extensions",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,"
        "MediaRouter,AutofillServerCommunication", "--disable-client-side-phishing-detection",
        "--disable-domain-reliability", "--no-pings",
        f"--user-data-dir={profile}",
        # every request, loopback included, would go to the counting proxy
        f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=5000", *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no chromium: `make test` installs Debian's "
                    "package where it runs as root (apt-get install chromium)")
def test_the_html_report_in_a_browser(tiny_demo: TinyDemo, tmp_path: Path) -> None:
    page = tiny_demo.repo / "reports/report_demo.html"
    text = page.read_text(encoding="utf-8")
    # self-contained: no remote script, stylesheet or picture, no script at all
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<script" not in text and "<link" not in text
    models = TINY["train.models"]

    # the proxy sees what a page asks of the network: a page with a remote picture, first
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://pictures.example.org/x.png">'
                       "</body></html>")
    proxy = CountingProxy()
    try:
        _chromium(["--dump-dom", control.as_uri()], proxy, tmp_path / "profile")
        asked = {_host(r) for r in proxy.requests}
        assert "pictures.example.org" in asked, proxy.requests
        proxy.requests.clear()
        dom = _chromium(["--dump-dom", page.as_uri()], proxy, tmp_path / "profile")
        shot = tmp_path / "report.png"
        _chromium([f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()], proxy,
                  tmp_path / "profile")
    finally:
        proxy.close()
    left = [r for r in proxy.requests if _host(r) not in BROWSER_OWN]
    assert left == [], left  # nothing the report asked for left the machine

    for section in ("metrics", "robustness", "curves", "pred-vs-true", "labels", "errors"):
        assert f'id="{section}"' in dom, section
    for model in models:
        figure = re.search(rf'<figure id="pred-vs-true-{model}">(.*?)</figure>', dom, re.S)
        assert figure and 'src="data:image/png;base64,' in figure.group(1), model
        errors = re.search(rf'<section class="model" id="errors-{model}">(.*?)</section>',
                           dom, re.S)
        assert errors, model
        rows = [r for r in re.findall(r"<tr>(.*?)</tr>", errors.group(1), re.S) if "<td" in r]
        # clip, transcript, true, prediction, error, without each modality, the other model
        assert len(rows) == 2 and all(r.count("<td") == 9 for r in rows), model
        assert re.search(rf"<td[^>]*>{model}</td>", dom), model  # its metrics row
    # every picture was drawn: robustness, validation curves, labels, one per model
    pictures = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert len(pictures) == 3 + len(models), pictures
    assert "synthetic demo corpus" in dom  # the reader is told what the numbers are

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10  # text, tables and figures, not a blank page
