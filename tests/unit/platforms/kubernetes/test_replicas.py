"""DeploymentReplicas without a server: its cache of replica counts and stale watch events."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.platforms.kubernetes import replicas as replicas_module
from kubelambda.platforms.kubernetes.replicas import DeploymentReplicas


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def merge_patch(self, kind: Any, **call: Any) -> dict[str, Any]:
        self.patches.append(call)
        return {}


async def run(call: Any, *args: Any, **kwargs: Any) -> Any:
    return call(*args, **kwargs)


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "fn", "labels": {"kubelambda.dev/function": "fn"}},
        "spec": {"replicas": replicas},
    }


def test_a_stale_event_does_not_undo_a_scale_call(monkeypatch):
    client = FakeClient()
    replicas = DeploymentReplicas(client, run=run)  # type: ignore[arg-type]
    replicas.deployment_event("ADDED", deployment(0))
    asyncio.run(replicas.scale(FunctionKey("ns", "fn"), 1, reason="woken"))
    assert client.patches[0]["subresource"] == "scale"
    assert client.patches[0]["patch"] == {"spec": {"replicas": 1}}
    replicas.deployment_event("MODIFIED", deployment(0))  # written before ours, delivered after
    assert replicas.replicas(FunctionKey("ns", "fn")) == 1
    replicas.deployment_event("MODIFIED", deployment(1))  # ours arrives
    replicas.deployment_event("MODIFIED", deployment(3))  # someone scaled after us: the watch wins
    assert replicas.replicas(FunctionKey("ns", "fn")) == 3


def test_an_expectation_that_never_shows_expires(monkeypatch):
    replicas = DeploymentReplicas(FakeClient(), run=run)  # type: ignore[arg-type]
    replicas.deployment_event("ADDED", deployment(0))
    asyncio.run(replicas.scale(FunctionKey("ns", "fn"), 2, reason="load"))
    now = replicas_module.time.monotonic()
    monkeypatch.setattr(
        replicas_module.time, "monotonic", lambda: now + replicas_module.EXPECTATION_SECONDS + 1
    )
    replicas.deployment_event("MODIFIED", deployment(5))
    assert replicas.replicas(FunctionKey("ns", "fn")) == 5


def test_no_deployment_no_scale_call():
    client = FakeClient()
    replicas = DeploymentReplicas(client, run=run)  # type: ignore[arg-type]
    asyncio.run(replicas.scale(FunctionKey("ns", "missing"), 1, reason="woken"))
    assert client.patches == []
    assert not replicas.known(FunctionKey("ns", "missing"))


def test_refresh_reads_the_count_from_the_server_over_a_stale_cache():
    class Server(FakeClient):
        def get(self, kind: Any, **call: Any) -> dict[str, Any]:
            assert call["subresource"] == "scale"
            return {"spec": {"replicas": 0}}

    replicas = DeploymentReplicas(Server(), run=run)  # type: ignore[arg-type]
    replicas.deployment_event("ADDED", deployment(1))  # the watch has not seen a scale to zero yet
    asyncio.run(replicas.refresh(FunctionKey("ns", "fn")))
    assert replicas.replicas(FunctionKey("ns", "fn")) == 0
