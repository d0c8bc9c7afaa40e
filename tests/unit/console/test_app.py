"""The console's pages over a fake source: the overview and a function's page, escaping,
the headers that keep scripts out, and a source's failure as a 503 page naming it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.console.app import SourceError, bind, bind_console, create_app
from kubelambda.console.figures import (
    Chart,
    Figures,
    FunctionState,
    Invocation,
    Logs,
    Overview,
    Series,
)

NOW = 1_800_000_000.0
HELLO = FunctionKey("default", "hello")
EVIL = FunctionKey("team-a", "evil")


class Source:
    def __init__(self, fail: str = "") -> None:
        self.fail = fail

    async def overview(self) -> Overview:
        if self.fail:
            raise SourceError(self.fail)
        states = [
            FunctionState(
                key=HELLO,
                desired=1,
                ready=1,
                min_replicas=0,
                max_replicas=5,
                scale_to_zero_after_seconds=30,
                idle_seconds=4,
                next_ticks=(("nightly", datetime.fromtimestamp(NOW + 60, UTC)),),
            ),
            FunctionState(
                key=EVIL,
                desired=0,
                ready=0,
                min_replicas=0,
                max_replicas=1,
                scale_to_zero_after_seconds=30,
                ready_condition="False: <script>alert(1)</script>",
            ),
        ]
        figures = {
            HELLO: Figures(
                invocations=42,
                gb_seconds=0.0525,
                errors=3,
                p50_seconds=0.012,
                p99_seconds=0.25,
                cold_starts=2,
                cold_start_seconds=0.4,
                backlog=5,
                oldest_event_age_seconds=42.4,
            )
        }
        chart = Chart(
            "requests per minute", "/min", (Series("requests", ((NOW - 60, 1), (NOW, 3))),)
        )
        return Overview(
            now=NOW,
            source="test",
            states=states,
            figures=figures,
            charts={HELLO: (chart,)},
            problems=("Prometheus <down>",),
        )

    async def logs(self, key: FunctionKey, *, last: int) -> Logs:
        lines = ["START RequestId: r1 Version: $LATEST", "<b>printed</b>"]
        return Logs([Invocation("r1", lines, report="", where="pod <hello-1>")], note="")


def _get(source: Source, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(source))
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_the_overview_lists_each_function_with_its_figures_and_charts() -> None:
    answer = _get(Source(), "/")
    assert answer.status_code == 200
    text = answer.text
    assert '<tr data-function="hello">' in text and '<tr data-function="team-a/evil">' in text
    for shown in (
        "42",
        "12 ms",
        "250 ms",
        "2 (400 ms)",
        "idle 4s: to zero in 26s",
        "nightly",
        "5 (oldest 42s)",
        "0.0525",  # billed GB-seconds
    ):
        assert shown in text, shown
    assert "<svg" in text and 'data-points="2"' in text
    assert "Prometheus &lt;down&gt;" in text
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_pages_forbid_scripts_and_outside_resources() -> None:
    headers = _get(Source(), "/").headers
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_a_function_page_shows_its_latest_invocations_lines_escaped() -> None:
    answer = _get(Source(), "/functions/default/hello")
    assert answer.status_code == 200
    assert "r1 (running)" in answer.text
    assert "pod &lt;hello-1&gt;" in answer.text  # the pod that wrote it, on a cluster
    assert "&lt;b&gt;printed&lt;/b&gt;" in answer.text
    assert _get(Source(), "/functions/default/nobody").status_code == 404


def test_a_source_failure_is_a_503_page_naming_it() -> None:
    answer = _get(Source(fail="cannot list functions: <forbidden>"), "/")
    assert answer.status_code == 503
    assert "cannot list functions: &lt;forbidden&gt;" in answer.text


def test_writes_are_not_served() -> None:
    async def go() -> int:
        transport = httpx.ASGITransport(app=create_app(Source()))
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            return (await client.post("/")).status_code

    assert asyncio.run(go()) == 405


def test_the_default_port_when_taken_gives_way_to_a_free_one_but_an_asked_port_does_not() -> None:
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        port = taken.getsockname()[1]
        fallback = bind_console("127.0.0.1", None, default=port)
        try:
            assert fallback.getsockname()[1] not in (0, port)
        finally:
            fallback.close()
        with pytest.raises(OSError, match="already in use"):
            bind_console("127.0.0.1", port, default=port)
    finally:
        taken.close()
