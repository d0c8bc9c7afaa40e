"""Local mode's source: each Function's replicas, idle time and next ticks from the parts local
mode runs (fakes here), and its latest invocations from its log lines."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubelambda.api import Function, Trigger, load_manifests
from kubelambda.api.identity import FunctionKey
from kubelambda.console.local import LocalSource, next_ticks
from kubelambda.console.samples import SampleRing
from kubelambda.gateway.activation import FunctionLoad
from kubelambda.gateway.metrics import GatewayMetrics

HELLO = FunctionKey("default", "hello")
MANIFESTS = """\
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: hello}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: "def handler(e, c):\\n    return 1\\n"}}}
  scaling: {scaleToZeroAfterSeconds: 60}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: every-five}
spec:
  function: hello
  schedule: {expression: rate(5 minutes)}
"""


@pytest.fixture
def manifests(tmp_path: Path) -> tuple[list[Function], list[Trigger]]:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(MANIFESTS))
    objects = load_manifests(path)
    return (
        [o for o in objects if isinstance(o, Function)],
        [o for o in objects if isinstance(o, Trigger)],
    )


def _source(
    manifests: tuple[list[Function], list[Trigger]],
    *,
    read_logs: object = None,
) -> LocalSource:
    functions, triggers = manifests
    metrics = GatewayMetrics(load=dict)
    return LocalSource(
        functions=functions,
        triggers=triggers,
        status=lambda: {HELLO: (1, 1)},
        load=lambda: {HELLO: FunctionLoad(0, 0, 1, 1, 3, last_request_at=90.0)},
        ring=SampleRing(metrics.registry.collect, wall=lambda: 1_800_000_000.0),
        monotonic=lambda: 100.0,
        queued_async=lambda: 4,
        read_logs=read_logs,  # type: ignore[arg-type]
    )


def test_the_overview_has_replicas_idle_time_and_next_ticks(
    manifests: tuple[list[Function], list[Trigger]],
) -> None:
    overview = asyncio.run(_source(manifests).overview())
    (state,) = overview.states
    assert (state.key, state.desired, state.ready) == (HELLO, 1, 1)
    assert state.idle_seconds == 10.0 and state.scale_to_zero_after_seconds == 60
    assert state.next_ticks == (("every-five", datetime(2027, 1, 15, 8, 5, tzinfo=UTC)),)
    assert overview.queued_async == 4 and overview.source == "local mode"


def test_next_ticks_are_those_of_the_functions_own_schedules(
    manifests: tuple[list[Function], list[Trigger]],
) -> None:
    _, triggers = manifests
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert next_ticks(triggers, HELLO, now) == (
        ("every-five", datetime(2026, 1, 1, 0, 5, tzinfo=UTC)),
    )
    assert next_ticks(triggers, FunctionKey("other", "hello"), now) == ()


def test_logs_are_the_latest_invocations_or_why_there_are_none(
    manifests: tuple[list[Function], list[Trigger]],
) -> None:
    lines = [
        "START RequestId: r1 Version: $LATEST",
        "hi",
        "END RequestId: r1",
        "REPORT RequestId: r1",
    ]
    logs = asyncio.run(_source(manifests, read_logs=lambda key: lines).logs(HELLO, last=5))
    assert [i.request_id for i in logs.invocations] == ["r1"] and logs.note == ""

    def missing(key: FunctionKey) -> list[str]:
        raise LookupError("hello has written nothing yet")

    logs = asyncio.run(_source(manifests, read_logs=missing).logs(HELLO, last=5))
    assert logs.invocations == [] and logs.note == "hello has written nothing yet"
    logs = asyncio.run(_source(manifests).logs(HELLO, last=5))
    assert "no log files" in logs.note
