"""A real Prometheus (Debian's package) on loopback, scraping the targets a test names."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.procs import free_port

PROMETHEUS = "/usr/bin/prometheus"


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    def wait_until_scraped(self, *, timeout: float) -> None:
        """Wait until every target has been scraped successfully (up == 1) at least once."""
        from support.waiting import wait_for

        def all_up() -> bool:
            query = urllib.parse.urlencode({"query": "min(up)"})
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=2) as answer:
                result = json.loads(answer.read())["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"

        wait_for(all_up, timeout=timeout, what="Prometheus to scrape its targets")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextmanager
def prometheus(targets: Sequence[str], *, scrape_seconds: float = 1.0) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (host:port, path /metrics) every `scrape_seconds`."""
    binary = shutil.which("prometheus") or PROMETHEUS
    if not Path(binary).exists():
        raise RuntimeError("prometheus is missing: install it with `apt-get install prometheus`")
    workdir = Path(tempfile.mkdtemp(prefix="kubelambda-prometheus-"))
    config = workdir / "prometheus.yml"
    listed = ", ".join(f"'{target}'" for target in targets)
    config.write_text(
        "global:\n"
        f"  scrape_interval: {int(scrape_seconds * 1000)}ms\n"
        f"  evaluation_interval: {int(scrape_seconds * 1000)}ms\n"
        "scrape_configs:\n"
        "  - job_name: kubelambda-gateway\n"
        f"    static_configs: [{{targets: [{listed}]}}]\n"
    )
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        from support.waiting import GiveUp, wait_for

        def ready() -> bool:
            if process.poll() is not None:
                raise GiveUp(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
            return _healthy(url)

        wait_for(ready, timeout=60, what="Prometheus to be ready")
        yield Prometheus(url=url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def serve_metrics(text: Callable[[], bytes]) -> http.server.ThreadingHTTPServer:
    """An exporter on loopback for Prometheus to scrape: every GET answers `text()` in the text
    format. Stop it with `stop_serving` (its next scrape is then refused)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_serving(server: http.server.ThreadingHTTPServer) -> None:
    """Stop answering; a no-op when stopped already."""
    if server.socket.fileno() != -1:
        server.shutdown()
        server.server_close()
