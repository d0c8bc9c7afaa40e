"""A Function's latest invocations from its pods' logs on a cluster (a fake API reader): which
pods are read and how (bounded), how their lines become invocations newest first across pods,
and that every failure is a note on the page, never an exception."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.console.pod_logs import (
    POD,
    KubeLogReader,
    LogLimits,
    read_function_logs,
    split_timestamped,
)
from kubelambda.platforms.kubernetes.client import ObjectList
from kubelambda.platforms.kubernetes.errors import ApiError, api_error
from kubelambda.platforms.kubernetes.kinds import Kind

HELLO = FunctionKey("team-a", "hello")


def _pod(name: str, started: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team-a"},
        "status": {"phase": phase, "startTime": started},
    }


def _invocation(stamp: str, rid: str, *printed: str) -> str:
    lines = [
        f"START RequestId: {rid} Version: $LATEST",
        *printed,
        f"END RequestId: {rid}",
        f"REPORT RequestId: {rid}\tDuration: 1.00 ms",
    ]
    return "".join(f"{stamp} {line}\n" for line in lines)


LOGS = {
    # Older pod: one invocation at :01 and one at :05 (nanoseconds, as the kubelet writes).
    "hello-old": "2026-01-01T00:00:00.5Z init line, outside any invocation\n"
    + _invocation("2026-01-01T00:00:01.000000001Z", "r1", "one")
    + _invocation("2026-01-01T00:00:05.25Z", "r3", "three"),
    # Newer pod: its one invocation falls between the old pod's two.
    "hello-new": _invocation("2026-01-01T00:00:03Z", "r2", "two"),
}


class Reader:
    def __init__(
        self,
        pods: list[dict[str, Any]],
        logs: dict[str, str],
        *,
        list_error: ApiError | None = None,
        read_errors: dict[str, ApiError] | None = None,
    ) -> None:
        self.pods = pods
        self.logs = logs
        self.list_error = list_error
        self.read_errors = read_errors or {}
        self.listed: list[tuple[Kind, str | None, str | None]] = []
        self.read: list[tuple[str, str, str, LogLimits]] = []

    def list_objects(
        self, kind: Kind, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        self.listed.append((kind, namespace, label_selector))
        if self.list_error is not None:
            raise self.list_error
        return ObjectList(items=self.pods, resource_version="1")

    def read_log(self, *, namespace: str, pod: str, container: str, limits: LogLimits) -> bytes:
        self.read.append((namespace, pod, container, limits))
        if pod in self.read_errors:
            raise self.read_errors[pod]
        return self.logs[pod].encode()


def _read(reader: Reader, *, last: int = 5, limits: LogLimits | None = None) -> Any:
    return asyncio.run(read_function_logs(reader, HELLO, last=last, limits=limits or LogLimits()))


def test_invocations_come_from_the_functions_running_pods_newest_first() -> None:
    reader = Reader(
        [
            _pod("hello-old", "2026-01-01T00:00:00Z"),
            _pod("hello-new", "2026-01-01T00:00:02Z"),
            _pod("hello-pending", "", phase="Pending"),
        ],
        LOGS,
    )
    logs = _read(reader)
    assert logs.note == ""
    assert [i.request_id for i in logs.invocations] == ["r3", "r2", "r1"]
    r3, r2, _ = logs.invocations
    assert (r3.where, r2.where) == ("pod hello-old", "pod hello-new")
    assert r3.lines == [
        "START RequestId: r3 Version: $LATEST",
        "three",
        "END RequestId: r3",
        "REPORT RequestId: r3\tDuration: 1.00 ms",
    ]
    assert r3.report.startswith("REPORT RequestId: r3")
    assert reader.listed == [(POD, "team-a", "kubelambda.dev/function=hello")]
    # A pending pod has no log; the function's container is named (an init container may run).
    assert sorted((ns, pod, c) for ns, pod, c, _ in reader.read) == [
        ("team-a", "hello-new", "function"),
        ("team-a", "hello-old", "function"),
    ]
    assert [i.request_id for i in _read(reader, last=2).invocations] == ["r3", "r2"]


def test_only_the_newest_pods_are_read_and_the_note_says_so() -> None:
    pods = [_pod(f"hello-{n}", f"2026-01-01T00:00:0{n}Z") for n in range(7)]
    reader = Reader(pods, {p["metadata"]["name"]: "" for p in pods})
    logs = _read(reader, limits=LogLimits(pods=2))
    assert sorted(pod for _, pod, _, _ in reader.read) == ["hello-5", "hello-6"]
    assert logs.invocations == []
    assert "read the newest 2 of 7 pods" in logs.note


def test_a_pod_that_cannot_be_read_is_a_note_and_the_others_still_show() -> None:
    reader = Reader(
        [_pod("hello-old", "2026-01-01T00:00:00Z"), _pod("hello-new", "2026-01-01T00:00:02Z")],
        LOGS,
        read_errors={"hello-new": api_error(403, "Forbidden", "pods/log is forbidden")},
    )
    logs = _read(reader)
    assert [i.request_id for i in logs.invocations] == ["r3", "r1"]
    assert "cannot read the log of pod hello-new" in logs.note
    assert "pods/log is forbidden" in logs.note


@pytest.mark.parametrize(
    ("reader", "note"),
    [
        (
            Reader([], {}, list_error=api_error(403, "Forbidden", "pods is forbidden")),
            "cannot list the pods of team-a/hello: 403 Forbidden: pods is forbidden",
        ),
        (Reader([], {}), "team-a/hello has no running pod"),
        (
            Reader(
                [_pod("hello-a", "2026-01-01T00:00:00Z")], {"hello-a": "2026-01-01T00:00:00Z x\n"}
            ),
            "no invocation in the last 500 lines of the last 60 minutes of 1 pod(s)",
        ),
    ],
    ids=["list refused", "no pods", "no invocation"],
)
def test_nothing_to_show_is_a_note_naming_why(reader: Reader, note: str) -> None:
    logs = _read(reader)
    assert logs.invocations == []
    assert note in logs.note


def test_timestamped_lines_lose_their_stamps_and_a_line_cut_by_the_byte_limit_is_dropped() -> None:
    body = b"2026-01-01T00:00:01.123456789Z first\r\n2026-01-01T00:00:02Z second line\n2026-01-0"
    lines, moments = split_timestamped(body, limit=len(body))
    assert lines == ["first", "second line"]
    assert moments[1] - moments[0] == pytest.approx(0.876544, abs=1e-6)
    whole = b"2026-01-01T00:00:01Z first\n"
    assert split_timestamped(whole, limit=1024)[0] == ["first"]


class Client:
    """A KubeClient's text read, as KubeLogReader uses it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]] | None, float]] = []

    def read_text(
        self, path: str, *, query: list[tuple[str, str]] | None = None, timeout: float
    ) -> bytes:
        self.calls.append((path, query, timeout))
        return b"2026-01-01T00:00:00Z hi\n"


def test_the_kube_reader_asks_pods_log_bounded_and_with_timestamps() -> None:
    client = Client()
    reader = KubeLogReader(client)  # type: ignore[arg-type]
    limits = LogLimits(lines=100, bytes=4096, since_seconds=600, timeout=2.5)
    body = reader.read_log(namespace="team-a", pod="hello-x", container="function", limits=limits)
    assert body == b"2026-01-01T00:00:00Z hi\n"
    [(path, query, timeout)] = client.calls
    assert (path, timeout) == ("/api/v1/namespaces/team-a/pods/hello-x/log", 2.5)
    assert dict(query or []) == {
        "container": "function",
        "timestamps": "true",
        "tailLines": "100",
        "limitBytes": "4096",
        "sinceSeconds": "600",
    }
