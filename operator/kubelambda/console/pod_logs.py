"""A Function's latest invocations on a cluster, from its pods' logs: the pods listed by the
function label, each one's `pods/log` read with a bound on lines, bytes, age and time, and the
lines grouped by the runtime's START/END/REPORT lines (`figures.invocations_of`).

`cluster.py` calls `read_function_logs` when the console may read logs (`--read-logs`);
`KubeLogReader` reads through a `KubeClient`, and tests hand in a fake `LogReader`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import FUNCTION_LABEL
from kubelambda.console.figures import Invocation, Logs, invocations_of
from kubelambda.platforms.kubernetes.client import KubeClient, ObjectList
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import Kind

__all__ = [
    "CONTAINER",
    "POD",
    "KubeLogReader",
    "LogLimits",
    "LogReader",
    "read_function_logs",
    "split_timestamped",
]

JSON = dict[str, Any]
POD: Final = Kind("", "v1", "pods", "Pod")
# The function's container in the pods the operator builds (controller/resources/deployment.py);
# named, since a pod with a code-fetching init container has more than one.
CONTAINER: Final = "function"


@dataclass(frozen=True)
class LogLimits:
    """How much one page may read: the newest `pods` pods, of each the last `lines` lines
    written in the last `since_seconds`, at most `bytes` of them, each read within `timeout`."""

    pods: int = 5
    lines: int = 500
    bytes: int = 256 * 1024
    since_seconds: int = 3600
    timeout: float = 5.0


class LogReader(Protocol):
    """What reading logs asks the API server: list pods, and get one's `pods/log`."""

    def list_objects(
        self, kind: Kind, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList: ...

    def read_log(self, *, namespace: str, pod: str, container: str, limits: LogLimits) -> bytes: ...


class KubeLogReader:
    """`LogReader` over a `KubeClient`: `pods/log` answers text, which the client's JSON calls
    do not take, so this asks through its request method."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    def list_objects(
        self, kind: Kind, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        return self._kube.list_objects(kind, namespace=namespace, label_selector=label_selector)

    def read_log(self, *, namespace: str, pod: str, container: str, limits: LogLimits) -> bytes:
        query = [
            ("container", container),
            ("timestamps", "true"),
            ("tailLines", str(limits.lines)),
            ("limitBytes", str(limits.bytes)),
            ("sinceSeconds", str(limits.since_seconds)),
        ]
        path = POD.path(namespace=namespace, name=pod, subresource="log")
        return self._kube.read_text(path, query=query, timeout=limits.timeout)


def _started(pod: JSON) -> str:
    return str((pod.get("status") or {}).get("startTime") or "")


def _readable(pod: JSON) -> bool:
    # A pending pod's container has not started: it has no log yet.
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")


def _moment(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


def split_timestamped(body: bytes, *, limit: int) -> tuple[list[str], dict[int, float]]:
    """`pods/log` lines read with timestamps=true: the lines without their stamps, and each
    line's moment by index. A last line cut by `limit` bytes is left out."""
    text = body.decode(errors="replace")
    lines = text.split("\n")
    if lines and (lines[-1] == "" or len(body) >= limit):
        lines.pop()  # the empty rest after the last newline, or a line cut short
    found: list[str] = []
    moments: dict[int, float] = {}
    for line in lines:
        stamp, _, rest = line.partition(" ")
        moments[len(found)] = _moment(stamp)
        found.append(rest.rstrip("\r"))
    return found, moments


def _pod_invocations(pod: str, body: bytes, limits: LogLimits) -> list[tuple[float, Invocation]]:
    lines, moments = split_timestamped(body, limit=limits.bytes)
    starts = {}
    for index, line in enumerate(lines):
        if line.startswith("START RequestId: "):
            starts[line.split()[2]] = moments[index]
    found = invocations_of(lines, last=len(lines))
    for invocation in found:
        invocation.where = f"pod {pod}"
    return [(starts.get(invocation.request_id, 0.0), invocation) for invocation in found]


def _read_one(
    reader: LogReader, namespace: str, pod: str, limits: LogLimits
) -> list[tuple[float, Invocation]] | str:
    try:
        body = reader.read_log(namespace=namespace, pod=pod, container=CONTAINER, limits=limits)
    except ApiError as exc:
        return f"cannot read the log of pod {pod}: {exc}"
    return _pod_invocations(pod, body, limits)


async def read_function_logs(
    reader: LogReader, key: FunctionKey, *, last: int, limits: LogLimits
) -> Logs:
    """The `last` invocations (newest first) in the logs of `key`'s newest pods; a note says
    what could not be read or was left out, and a failure is a note, never an exception."""
    try:
        listed = await asyncio.to_thread(
            reader.list_objects,
            POD,
            namespace=key.namespace,
            label_selector=f"{FUNCTION_LABEL}={key.name}",
        )
    except ApiError as exc:
        return Logs([], note=f"cannot list the pods of {key}: {exc}")
    pods = sorted((p for p in listed.items if _readable(p)), key=_started, reverse=True)
    if not pods:
        return Logs([], note=f"{key} has no running pod (at zero?): no log lines to read")
    names = [str((pod.get("metadata") or {}).get("name", "")) for pod in pods[: limits.pods]]
    results = await asyncio.gather(
        *(asyncio.to_thread(_read_one, reader, key.namespace, name, limits) for name in names)
    )
    notes: list[str] = []
    found: list[tuple[float, Invocation]] = []
    read = 0
    for result in results:
        if isinstance(result, str):
            notes.append(result)
        else:
            found += result
            read += 1
    if len(pods) > limits.pods:
        notes.append(f"read the newest {limits.pods} of {len(pods)} pods")
    found.sort(key=lambda pair: pair[0], reverse=True)
    invocations = [invocation for _, invocation in found[: max(last, 0)]]
    if not invocations and read:
        notes.append(_nothing(limits, read))
    return Logs(invocations, note="; ".join(notes))


def _nothing(limits: LogLimits, pods: int) -> str:
    return (
        f"no invocation in the last {limits.lines} lines of the last"
        f" {limits.since_seconds // 60} minutes of {pods} pod(s)"
    )
