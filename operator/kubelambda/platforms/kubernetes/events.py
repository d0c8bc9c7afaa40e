"""Kubernetes Events about an object, as ``kubectl describe`` and ``kubectl get events`` show them.

``event_manifest`` is pure; ``aio.AsyncKube.record_event`` posts what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

__all__ = ["EventType", "event_manifest"]

EventType = Literal["Normal", "Warning"]
MAX_MESSAGE: Final = 1024  # the API server refuses longer event messages


def event_manifest(
    involved: Mapping[str, Any],
    *,
    type: EventType,
    reason: str,
    message: str,
    component: str,
    now: datetime,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a manifest with apiVersion, kind and metadata)."""
    meta = involved["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    reference = {
        "apiVersion": involved["apiVersion"],
        "kind": involved["kind"],
        "name": meta["name"],
        "namespace": meta.get("namespace"),
    }
    if meta.get("uid"):
        reference["uid"] = meta["uid"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace")},
        "involvedObject": reference,
        "type": type,
        "reason": reason,
        "message": message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…",
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
