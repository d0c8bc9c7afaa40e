"""controller/pool.py's settle, as a table: which specialised pods go (the Deployment has a ready
pod, the code changed, the Function is at zero since long enough), which stay, and when to look
again."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig, WarmPool
from kubelambda.controller.pool import PoolManager, SpecializedPod
from kubelambda.controller.resources.status import DeploymentState
from kubelambda.controller.store import Store
from unit.controller.conftest import NOW

KEY = FunctionKey("team-a", "hello")


class Pods:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, int | None]] = []

    async def list_pods(self, namespace: str, *, selector: str) -> list[dict[str, Any]]:
        return []

    async def patch_pod(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {}

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None) -> bool:
        self.deleted.append((name, grace_seconds))
        return True

    async def create_once(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return dict(obj)


def state(*, desired: int, ready: int) -> DeploymentState:
    return DeploymentState(
        desired=desired, ready=ready, updated=ready, total=ready, current=True, failure=None
    )


@pytest.mark.parametrize(
    ("deployment", "code_hash", "age", "deleted", "recheck"),
    [
        (state(desired=1, ready=1), "sha256:a", 1, ["pod-1"], None),
        (state(desired=1, ready=0), "sha256:a", 1, [], None),
        (state(desired=1, ready=0), "sha256:b", 1, ["pod-1"], None),
        (state(desired=0, ready=0), "sha256:a", 31, ["pod-1"], None),
        (state(desired=0, ready=0), "sha256:a", 10, [], 20.0),
        (None, "sha256:a", 100, [], None),
    ],
    ids=[
        "handed-over",
        "deployment-starting",
        "code-changed",
        "at-zero",
        "just-claimed",
        "no-deployment",
    ],
)
def test_which_specialised_pods_go(
    deployment: DeploymentState | None,
    code_hash: str,
    age: int,
    deleted: list[str],
    recheck: float | None,
) -> None:
    pods = Pods()
    manager = PoolManager(
        cluster=FakeCluster(),
        pods=pods,
        store=Store(),
        config=ControllerConfig(warm_pool=WarmPool(size=1)),
        clock=lambda: NOW,
    )
    claimed = NOW - timedelta(seconds=age)
    manager.remember(KEY, SpecializedPod(name="pod-1", code_hash="sha256:a", at=claimed))
    found = asyncio.run(
        manager.settle(KEY, deployment=deployment, code_hash=code_hash, grace_seconds=5)
    )
    assert pods.deleted == [(name, 5) for name in deleted]
    assert found == recheck
    assert manager.serving(KEY) is not bool(deleted)


class CountingPods(Pods):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []

    async def create_once(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.created.append(obj["metadata"]["namespace"])
        return dict(obj)


@pytest.mark.parametrize(
    ("namespaces", "pooled"), [((), True), (("team-a",), True), (("warm",), False)]
)
def test_pools_are_made_only_in_the_pools_namespaces(
    namespaces: tuple[str, ...], pooled: bool
) -> None:
    pods = CountingPods()
    manager = PoolManager(
        cluster=FakeCluster(),
        pods=pods,
        store=Store(),
        config=ControllerConfig(
            warm_pool=WarmPool(size=1, namespaces=namespaces),
            runtime_images={"python3.12": "localhost/kubelambda-runtime:0.1.0"},
        ),
        clock=lambda: NOW,
    )
    asyncio.run(manager.ensure("team-a"))
    assert pods.created == (["team-a"] if pooled else [])  # the token Secret, made first
