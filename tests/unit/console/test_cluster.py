"""The cluster source: each Function's state from its object, its Deployment and its schedule
Triggers (a fake API reader), and what a page says when the API server or Prometheus fails."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.console.app import SourceError
from kubelambda.console.cluster import ClusterSource, states_of
from kubelambda.console.pod_logs import LogLimits
from kubelambda.console.prometheus import PrometheusError
from kubelambda.platforms.kubernetes.client import ObjectList
from kubelambda.platforms.kubernetes.errors import api_error
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION, TRIGGER, Kind


def _function(name: str, namespace: str = "team-a", **scaling: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return 1\n"}}},
            "scaling": scaling,
        },
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]},
    }


def _deployment(function: str, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{function}-fn",
            "namespace": "team-a",
            "labels": {"kubelambda.dev/function": function},
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def _schedule(name: str, function: str, next_tick: str | None) -> dict[str, Any]:
    status = {"nextTick": next_tick} if next_tick else {}
    return {
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"function": function, "schedule": {"expression": "rate(5 minutes)"}},
        "status": status,
    }


FUNCTIONS = [_function("b", minReplicas=1, maxReplicas=3), _function("a")]
DEPLOYMENTS = [_deployment("b", 2, 1)]
TRIGGERS = [
    _schedule("late", "a", "2026-01-01T00:10:00Z"),
    _schedule("early", "a", "2026-01-01T00:05:00Z"),
    _schedule("unplanned", "a", None),
    {"metadata": {"name": "web", "namespace": "team-a"}, "spec": {"function": "a", "http": {}}},
]


def test_state_joins_the_function_its_deployment_and_its_schedule_ticks() -> None:
    states, problems = states_of(FUNCTIONS, DEPLOYMENTS, TRIGGERS)
    assert problems == []
    a, b = states
    assert a.key == FunctionKey("team-a", "a") and b.key == FunctionKey("team-a", "b")
    assert (b.desired, b.ready, b.min_replicas, b.max_replicas) == (2, 1, 1, 3)
    assert (a.desired, a.ready) == (0, 0)  # no Deployment yet
    assert a.ready_condition == "False: Waiting"
    assert [name for name, _ in a.next_ticks] == ["early", "late"]
    assert a.next_ticks[0][1] == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert b.next_ticks == ()


def test_a_function_the_models_refuse_is_shown_with_its_problem() -> None:
    broken = _function("c")
    broken["spec"]["handler"] = "not a handler"
    states, problems = states_of([broken], [], [])
    assert [s.key.name for s in states] == ["c"]
    assert len(problems) == 1 and "team-a/c" in problems[0]


class Kube:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[tuple[str, str | None, str | None]] = []

    def list_objects(
        self, kind: Kind, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        self.asked.append((str(kind), namespace, label_selector))
        if self.fail:
            raise api_error(403, "Forbidden", "functions is forbidden")
        items = {FUNCTION: FUNCTIONS, DEPLOYMENT: DEPLOYMENTS, TRIGGER: TRIGGERS}[kind]
        return ObjectList(items=list(items), resource_version="1")


class BrokenPrometheus:
    def figures(self) -> dict[FunctionKey, Any]:
        raise PrometheusError("cannot reach Prometheus at http://prom:9090: refused")

    def charts(self, now: float) -> dict[FunctionKey, Any]:
        raise AssertionError("not asked after figures failed")


def test_overview_lists_only_with_get_and_list_and_says_when_prometheus_fails() -> None:
    kube = Kube()
    source = ClusterSource(
        kube=kube,
        prometheus=BrokenPrometheus(),  # type: ignore[arg-type]
        namespaces=["team-a"],
        wall=lambda: 1000.0,
    )
    overview = asyncio.run(source.overview())
    assert [s.key.name for s in overview.states] == ["a", "b"]
    assert overview.problems == ("cannot reach Prometheus at http://prom:9090: refused",)
    assert overview.figures == {} and overview.charts == {}
    assert sorted(kube.asked) == [
        ("deployments.apps", "team-a", "app.kubernetes.io/managed-by=kubelambda"),
        ("functions.kubelambda.dev", "team-a", None),
        ("triggers.kubelambda.dev", "team-a", None),
    ]


def test_without_prometheus_the_page_says_so_and_logs_point_to_the_cli() -> None:
    source = ClusterSource(kube=Kube(), prometheus=None, wall=lambda: 1.0)
    overview = asyncio.run(source.overview())
    assert "no Prometheus given" in overview.problems[0]
    logs = asyncio.run(source.logs(FunctionKey("team-a", "a"), last=5))
    assert logs.invocations == []
    assert "kubelambda logs a --cluster -n team-a" in logs.note
    assert "--read-logs" in logs.note and "console.readLogs=true" in logs.note


class PodLogs:
    """Pods and their logs as the API server answers them (pod_logs.LogReader)."""

    def __init__(self) -> None:
        self.read: list[tuple[str, str]] = []

    def list_objects(
        self, kind: Kind, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        assert (kind.plural, label_selector) == ("pods", "kubelambda.dev/function=a")
        pod = {"metadata": {"name": "a-1"}, "status": {"phase": "Running", "startTime": "x"}}
        return ObjectList(items=[pod], resource_version="1")

    def read_log(self, *, namespace: str, pod: str, container: str, limits: LogLimits) -> bytes:
        self.read.append((namespace, pod))
        return (
            b"2026-01-01T00:00:00Z START RequestId: r1 Version: $LATEST\n"
            b"2026-01-01T00:00:00Z hello\n"
            b"2026-01-01T00:00:01Z END RequestId: r1\n"
        )


def test_with_a_log_reader_a_function_page_shows_its_pods_invocations() -> None:
    pod_logs = PodLogs()
    source = ClusterSource(kube=Kube(), prometheus=None, wall=lambda: 1.0, logs=pod_logs)
    logs = asyncio.run(source.logs(FunctionKey("team-a", "a"), last=5))
    assert pod_logs.read == [("team-a", "a-1")]
    assert [(i.request_id, i.where) for i in logs.invocations] == [("r1", "pod a-1")]
    assert logs.invocations[0].lines[1] == "hello"
    assert logs.note == ""


def test_an_api_server_refusal_is_a_source_error_naming_what() -> None:
    source = ClusterSource(kube=Kube(fail=True), prometheus=None, wall=lambda: 1.0)
    with pytest.raises(
        SourceError, match=r"cannot list functions\.kubelambda\.dev in all namespaces"
    ):
        asyncio.run(source.overview())
