"""`kubelambda local`'s console in a real headless Chromium (Debian's package), driven over the
DevTools protocol on loopback: after traffic the page lists the functions, a chart has a line,
a function's page shows an invocation's log lines, the browser reports no error, and a
screenshot is kept in the test's folder."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket  # websocket-client, which the kubernetes client depends on

from support.local import LocalMode, start_local
from support.waiting import GiveUp, free_port, wait_for

MANIFESTS = """\
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: hello}
spec:
  runtime: python3.12
  handler: app.handler
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              print("greeting", (event.get("queryStringParameters") or {}).get("name"))
              return {"statusCode": 200, "body": "hello"}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: hello-http}
spec:
  function: hello
  http: {path: /hello, methods: [GET], auth: {type: none}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: failing}
spec:
  runtime: python3.12
  handler: app.handler
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              raise RuntimeError("always")
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: failing-http}
spec:
  function: failing
  http: {path: /failing, methods: [GET], auth: {type: none}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: nightly}
spec:
  function: failing
  schedule: {expression: "cron(0 3 * * ? *)"}
"""


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "the console's browser test needs Debian's chromium: apt-get install chromium"
            " (scripts/setup installs it)"
        )
    return found


class Browser:
    """One headless Chromium and one DevTools session to its first page."""

    def __init__(self, profile: Path) -> None:
        self.process = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        active = profile / "DevToolsActivePort"

        def port() -> int | None:
            if self.process.poll() is not None:
                raise GiveUp(f"chromium exited with {self.process.returncode}")
            lines = active.read_text().split() if active.exists() else []
            return int(lines[0]) if lines else None

        self.port = wait_for(port, timeout=60, what="Chromium's DevTools port")
        targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result; events meanwhile are kept in `events`."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"no answer to {method} within 30 s")

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)

        def loaded() -> bool:
            self.call("Runtime.evaluate", expression="1")  # pumps the events
            return any(e["method"] == "Page.loadEventFired" for e in self.events)

        wait_for(loaded, timeout=30, what=f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def errors(self) -> list[dict[str, Any]]:
        """Console errors, uncaught exceptions and error log entries (CSP refusals among them)."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            thrown = event["method"] == "Runtime.exceptionThrown"
            if thrown or (
                event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error"
            ):
                found.append(params)
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"])
        return found

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[LocalMode, str]]:
    path = tmp_path / "functions.yaml"
    path.write_text(textwrap.dedent(MANIFESTS))
    console_port = free_port()
    started = start_local(path, "--console-port", str(console_port))
    try:
        url = f"http://127.0.0.1:{console_port}/"
        assert f"kubelambda local: console {url}" in started.lines
        yield started, url
    finally:
        started.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    opened = Browser(tmp_path / "chromium-profile")
    try:
        yield opened
    finally:
        opened.close()


def _points(html: str, function: str) -> int:
    """How many points the `requests` line of `function`'s first chart has in the page."""
    section = html.split(f'/functions/default/{function}">{function}</a></h2>', 1)[-1]
    found = re.search(r'data-series="requests" data-points="(\d+)"', section)
    return int(found[1]) if found else 0


def test_the_console_shows_functions_figures_charts_and_logs_in_a_browser(
    local: tuple[LocalMode, str], browser: Browser, tmp_path: Path
) -> None:
    mode, console = local
    for name in ("a", "b", "c"):
        assert mode.client.get("/hello", params={"name": name}).status_code == 200
    assert mode.client.get("/failing").status_code == 502
    # A handler error through the Invoke API is a 200: only the runtime counts it.
    invoked = mode.client.post("/2015-03-31/functions/failing/invocations", json={})
    assert invoked.status_code == 200 and invoked.headers["x-amz-function-error"] == "Unhandled"

    # Samples are taken every 10 s: a line needs two rate points, so wait for more traffic.
    def charted() -> bool:
        mode.client.get("/hello", params={"name": "again"})
        return _points(httpx.get(console, timeout=10).text, "hello") >= 2

    wait_for(charted, timeout=60, interval=1, what="the hello chart to have two points")

    browser.navigate(console)
    names = browser.evaluate(
        "[...document.querySelectorAll('#functions tr[data-function]')]"
        ".map(r => r.dataset.function)"
    )
    assert names == ["hello", "failing"]
    cells = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#functions tr[data-function]')]"
        ".map(r => [r.dataset.function, [...r.cells].map(c => c.textContent)]))"
    )
    hello, failing = cells["hello"], cells["failing"]
    assert int(hello[3]) >= 4 and failing[3] == "2"  # invocations
    assert float(hello[4]) > 0 and float(failing[4]) > 0  # billed GB-seconds
    assert hello[5] == "0" and failing[5] == "1"  # 5xx answers
    assert hello[6] == "0" and failing[6] == "2"  # function errors, as the runtimes count
    assert hello[7].endswith(" ms") and hello[9].startswith("1 (")  # p50; one cold start
    assert "nightly" in failing[12]  # its next schedule tick
    # The chart's line: a path the browser laid out, with at least two points.
    drawn = browser.evaluate(
        "(() => { const p = document.querySelector('svg.chart path[data-series=requests]');"
        " const box = p.getBBox(); return [p.getTotalLength(), box.width]; })()"
    )
    assert drawn[0] > 0 and drawn[1] > 0, drawn
    overview = tmp_path / "console.png"
    browser.screenshot(overview)
    print(f"console screenshot: {overview}")
    assert browser.errors() == []

    browser.navigate(f"{console}functions/default/hello")
    logs = browser.evaluate(
        "[...document.querySelectorAll('pre')].map(p => p.textContent).join('\\n')"
    )
    assert "greeting again" in logs or "greeting c" in logs
    assert "REPORT RequestId:" in logs
    page = tmp_path / "console-hello.png"
    browser.screenshot(page)
    print(f"console screenshot: {page}")
    assert overview.stat().st_size > 0 and page.stat().st_size > 0
    assert browser.errors() == []
