"""Writing a Function's objects against the real API server (controller/owned.py): a new object is
created with one POST, no GET first; its first update takes the creation's fields over for
server-side apply, so what a later spec drops is removed; someone else's object of that name is
never written."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.apiserver import ApiServer
from kubelambda.controller.config import FIELD_MANAGER, REPLICAS_MANAGER
from kubelambda.controller.owned import OwnedObjects
from kubelambda.controller.resources.meta import Owner, owner_reference
from kubelambda.controller.resources.status import BlockedError
from kubelambda.controller.store import Store
from kubelambda.platforms.kubernetes.aio import AsyncKube
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.errors import Conflict
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT


@pytest.fixture
def kube(kube_api: ApiServer) -> Iterator[AsyncKube]:
    cluster = AsyncKube(
        KubeClient.from_config(kube_api.kubeconfig),
        workers=2,
        component="test",
        field_manager=FIELD_MANAGER,
    )
    yield cluster
    cluster.close()


def deployment(owner: Owner, env: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {"app": owner.name, **{f"env-{k.lower()}": "yes" for k in env}},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "selector": {"matchLabels": {"app": owner.name}},
            "template": {
                "metadata": {"labels": {"app": owner.name}},
                "spec": {
                    "containers": [
                        {
                            "name": "function",
                            "image": "example.invalid/function:1",
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ]
                },
            },
        },
    }


def test_a_created_object_s_first_update_removes_what_the_new_spec_drops(
    kube_api: ApiServer, kube: AsyncKube, namespace: str
) -> None:
    owner = Owner(name="fn", namespace=namespace, uid=str(uuid.uuid4()))
    owned = OwnedObjects(cluster=kube, store=Store())

    async def scenario() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        changes: list[str] = []
        first = await owned.ensure(
            deployment(owner, {"A": "1", "B": "2"}), owner, changes, create_replicas=3
        )
        assert changes == ["created Deployment fn"]
        # The first update's write of managedFields is conditional on the version it read: the
        # Deployment controller's own writes to the new object (its revision annotation) can
        # come between and conflict, and the reconcile is then retried, as here.
        for attempt in range(3):
            try:
                second = await owned.ensure(deployment(owner, {"A": "1"}), owner, changes)
                break
            except Conflict:
                if attempt == 2:
                    raise
        assert changes[-1] == "updated Deployment fn"
        return first, second

    first, second = asyncio.run(scenario())
    assert first is not None and second is not None
    stored = kube.client.get(DEPLOYMENT, namespace=namespace, name="fn")
    assert stored is not None
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert "env-b" not in stored["metadata"]["labels"]
    # Replicas, set at creation, survive the first apply that leaves them out.
    assert stored["spec"]["replicas"] == 3
    # The creation's entry became the apply's, and the write that made it so left no entry.
    owners = {
        (e["manager"], e["operation"])
        for e in stored["metadata"]["managedFields"]
        if not e.get("subresource")  # the Deployment controller's status
    }
    assert owners == {(FIELD_MANAGER, "Apply"), (REPLICAS_MANAGER, "Apply")}


def test_someone_else_s_object_of_that_name_is_not_written(
    kube_api: ApiServer, kube: AsyncKube, namespace: str
) -> None:
    foreign = Owner(name="fn", namespace=namespace, uid=str(uuid.uuid4()))
    kube.client.create(deployment(foreign, {"MINE": "yes"}))
    owner = Owner(name="fn", namespace=namespace, uid=str(uuid.uuid4()))
    owned = OwnedObjects(cluster=kube, store=Store())

    with pytest.raises(BlockedError, match="not owned by this Function"):
        asyncio.run(owned.ensure(deployment(owner, {"A": "1"}), owner, []))
    stored = kube.client.get(DEPLOYMENT, namespace=namespace, name="fn")
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "MINE", "value": "yes"}
    ]
