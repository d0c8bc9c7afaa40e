"""The warm pool against a real API server and controller-manager: the pool's Deployment, Secret
and NetworkPolicy are created; a wake-up with a fake specialiser claims a ready pool pod and
makes it the Function's (and the ReplicaSet refills the pool); a failed specialisation deletes
the pod and says so; once the Function's Deployment has a ready pod the specialised one is
deleted; status says which path a Function's cold start takes.

No kubelet runs here, so pods never run: the tests mark them Ready through the status
subresource, as a kubelet would, and the HTTP call to a pool pod is the FakeSpecializer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pytest

from harness.apiserver import ApiServer
from integration.controller.operating import RUNTIME_IMAGE, get
from kubelambda.api.identity import FunctionKey
from kubelambda.api.subscriptions import BucketNotifications
from kubelambda.autoscaler.arrivals import Instance
from kubelambda.controller.config import FIELD_MANAGER, ControllerConfig, WarmPool
from kubelambda.controller.operator import Operator
from kubelambda.controller.resources.pool import POOL_LABEL
from kubelambda.controller.specialize import FakeSpecializer, Specialized
from kubelambda.controller.warmstart import PoolPodCache, WarmStarter
from kubelambda.platforms.kubernetes.aio import AsyncKube
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION, POD
from kubelambda.platforms.kubernetes.pods import KubePoolPods
from kubelambda.platforms.s3 import S3Notifications
from support.manifests import inline_function
from support.waiting import wait_for, wait_for_async

# The shared operator (no pool) would write these Functions' status too, without the pool's.
pytestmark = pytest.mark.own_operator

APP = 'def handler(event, context):\n    return {"ok": True}\n'
POOL = "kubelambda-pool-python3-12"


@dataclass
class Scene:
    api: ApiServer
    namespace: str
    operator: Operator
    starter: WarmStarter
    specializer: FakeSpecializer
    client: KubeClient
    cache: PoolPodCache

    def apply(self, *objects: dict[str, Any]) -> None:
        documents = "\n---\n".join(json.dumps(obj) for obj in objects)
        self.api.kubectl("apply", "-n", self.namespace, "-f", "-", input=documents)

    async def reconcile(self, name: str) -> dict[str, Any]:
        """Show the operator the Function and its Deployment as they are now, reconcile it, and
        return the Function."""
        key = FunctionKey(self.namespace, name)
        body = self.client.get(FUNCTION, namespace=self.namespace, name=name)
        assert body is not None
        self.operator.function_event("MODIFIED", body)
        deployment = self.client.get(DEPLOYMENT, namespace=self.namespace, name=name)
        if deployment is not None:
            self.operator.owned_event(DEPLOYMENT, "MODIFIED", deployment)
        await self.operator.reconcile(("Function", *key))
        found = self.client.get(FUNCTION, namespace=self.namespace, name=name)
        assert found is not None
        return found

    def pods(self, selector: str) -> list[dict[str, Any]]:
        out = self.api.kubectl("get", "pods", "-n", self.namespace, "-l", selector, "-o", "json")
        return list(json.loads(out.stdout)["items"])

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.api.kubectl(
            "get", "events", "-n", self.namespace,
            f"--field-selector=involvedObject.name={name}", "-o", "json",
        )  # fmt: skip
        return list(json.loads(out.stdout)["items"])

    def pool_pods(self, count: int) -> list[dict[str, Any]]:
        """Wait for ``count`` pods in the pool (the ReplicaSet made them)."""
        return wait_for(
            lambda: found if len(found := self.pods("kubelambda.dev/pool")) == count else None,
            timeout=60,
            what=f"{count} pool pods in {self.namespace}",
        )

    def mark_ready(self, pod: dict[str, Any], ip: str) -> None:
        """What a kubelet would report once the pod's readiness probe passes."""
        status = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        }
        self.api.kubectl(
            "patch", "pod", pod["metadata"]["name"], "-n", self.namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps(status),
        )  # fmt: skip


@asynccontextmanager
async def scene(
    api: ApiServer, namespace: str, specializer: FakeSpecializer, *, watch: bool = False
) -> AsyncIterator[Scene]:
    """The operator with a pool, in this process; ``watch``: the starter picks pods from a
    watch of the pool's pods (as ``kubelambda operator`` runs it), else it lists them."""
    client = KubeClient.from_config(api.kubeconfig)
    cluster = AsyncKube(client, component="test", field_manager=FIELD_MANAGER)
    pods = KubePoolPods(client, field_manager=FIELD_MANAGER)
    config = ControllerConfig(
        runtime_images=MappingProxyType({"python3.12": RUNTIME_IMAGE}),
        warm_pool=WarmPool(size=2, runtimes=("python3.12",), memory_mb=128),
        resync_seconds=3600,
    )
    notifications: BucketNotifications = S3Notifications()
    operator = Operator(cluster=cluster, config=config, notifications=notifications, pool_pods=pods)
    assert operator.pool is not None
    store = operator.store
    cache = PoolPodCache()
    starter = WarmStarter(
        manager=operator.pool,
        specializer=specializer,
        function_object=lambda key: store.get(FUNCTION, namespace=key.namespace, name=key.name),
        cache=cache if watch else None,
    )
    informer = Informer(
        client,
        POD,
        on_event=cache.event,
        loop=asyncio.get_running_loop(),
        label_selector=POOL_LABEL,
        namespace=namespace,
    )
    if watch:
        informer.start()
        await asyncio.wait_for(informer.synced.wait(), 30)
        cache.synced = True
    try:
        yield Scene(api, namespace, operator, starter, specializer, client, cache)
    finally:
        informer.stop()
        await starter.aclose()
        pods.close()
        cluster.close()


def run(body: Callable[[], Any]) -> None:
    asyncio.run(body())


def test_the_pool_is_made_and_a_wake_up_claims_a_ready_pod(
    kube_api: ApiServer, crds: None, namespace: str
) -> None:
    specializer = FakeSpecializer([Specialized(200, {"function": "x", "initMs": 7})])

    async def body() -> None:
        async with scene(kube_api, namespace, specializer, watch=True) as s:
            s.apply(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                 "stringData": {"password": "s3cret"}},
                inline_function("fn", APP, env=[
                    {"name": "DB_PASSWORD",
                     "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    {"name": "GREETING", "value": "hi $(DB_PASSWORD)"},
                ]),
            )  # fmt: skip
            function = await s.reconcile("fn")
            assert function["status"]["coldStartPath"] == "pool"
            assert "coldStartReason" not in function["status"]
            pool = get(kube_api, "deployment", POOL, namespace)
            assert pool is not None and pool["spec"]["replicas"] == 2
            secret = get(kube_api, "secret", "kubelambda-pool", namespace)
            assert secret is not None and secret["data"]["token"]
            assert get(kube_api, "networkpolicy", "kubelambda-pool", namespace) is not None

            _, second = s.pool_pods(2)
            s.mark_ready(second, "10.9.8.7")
            await wait_for_async(
                lambda: any(
                    (p.get("status") or {}).get("podIP") == "10.9.8.7"
                    for p in s.cache.pods(namespace, "python3.12")
                ),
                seconds=30,
                what="the watch to show the ready pool pod",
            )
            task = s.starter.wake(FunctionKey(namespace, "fn"))
            assert task is not None
            serving = await asyncio.wait_for(task, 30)
            assert serving == Instance(pod=second["metadata"]["name"], ip="10.9.8.7", port=8080)
            claimed = serving.pod

            [(ip, token, sent)] = specializer.calls
            assert ip == "10.9.8.7"
            assert token == s.operator.pool.token(namespace)  # type: ignore[union-attr]
            assert sent["function"] == f"{namespace}/fn"
            assert sent["files"] == {"app.py": APP}
            env = sent["env"]
            assert env["DB_PASSWORD"] == "s3cret" and env["GREETING"] == "hi s3cret"
            assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn" and env["_HANDLER"] == "app.handler"
            assert "LAMBDA_TASK_ROOT" not in env

            pod = get(kube_api, "pod", claimed, namespace)
            assert pod is not None
            meta = pod["metadata"]
            assert "kubelambda.dev/pool" not in meta["labels"]
            assert meta["labels"]["kubelambda.dev/function"] == "fn"
            assert meta["labels"]["kubelambda.dev/from-pool"] == "python3.12"
            assert meta["annotations"]["kubelambda.dev/specialized-for"] == f"{namespace}/fn"
            assert meta["annotations"]["kubelambda.dev/code-hash"] == function["status"]["codeHash"]
            [owner] = meta["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["controller"]) == ("Function", "fn", True)
            # Written after the task's answer (the pod serves first).
            await wait_for_async(
                lambda: any(e["reason"] == "WarmStarted" for e in s.events("fn")),
                seconds=10,
                what="the WarmStarted Event",
            )
            [started] = [e for e in s.events("fn") if e["reason"] == "WarmStarted"]
            assert f"pool pod {claimed} serves the first requests" in started["message"]
            print(started["message"])  # the operator's share of a warm start, for the report
            # The ReplicaSet let it go and started a replacement: the pool refills.
            refilled = s.pool_pods(2)
            assert claimed not in {p["metadata"]["name"] for p in refilled}
            await wait_for_async(
                lambda: (
                    len(s.cache.pods(namespace, "python3.12")) == 2
                    and claimed
                    not in {p["metadata"]["name"] for p in s.cache.pods(namespace, "python3.12")}
                ),
                seconds=30,
                what="the watch to let the claimed pod go and show the new one",
            )
            # A second wake-up while it serves starts nothing.
            assert s.starter.wake(FunctionKey(namespace, "fn")) is None

            # The Deployment scales up behind it; once its pod is ready, the hand-over.
            kube_api.kubectl("scale", "deployment", "fn", "-n", namespace, "--replicas=1")
            [own] = wait_for(
                lambda: s.pods("kubelambda.dev/function=fn,!kubelambda.dev/from-pool"),
                timeout=60,
                what="the Deployment's pod",
            )
            await s.reconcile("fn")
            assert get(kube_api, "pod", claimed, namespace) is not None  # not ready yet: kept
            s.mark_ready(own, "10.9.8.8")
            wait_for(
                lambda: (
                    (get(kube_api, "deployment", "fn", namespace) or {})
                    .get("status", {})
                    .get("readyReplicas")
                ),
                timeout=60,
                what="the Deployment to count its ready pod",
            )
            await s.reconcile("fn")
            wait_for(
                lambda: get(kube_api, "pod", claimed, namespace) is None,
                timeout=30,
                what="the specialised pod deleted",
            )

    run(body)


@pytest.mark.parametrize(
    ("answer", "deleted", "said"),
    [
        (
            Specialized(422, {"errorType": "Runtime.ImportModuleError", "errorMessage": "no app"}),
            True,
            "answered 422: Runtime.ImportModuleError: no app",
        ),
        (
            Specialized(
                0, {"errorMessage": "the pod could not be reached: refused"}, reached=False
            ),
            False,
            "answered nothing: the pod could not be reached: refused",
        ),
    ],
    ids=["init-failed", "unreachable"],
)
def test_a_failed_specialisation_says_why_and_deletes_a_spoiled_pod(
    kube_api: ApiServer, crds: None, namespace: str, answer: Specialized, deleted: bool, said: str
) -> None:
    async def body() -> None:
        async with scene(kube_api, namespace, FakeSpecializer([answer])) as s:
            s.apply(inline_function("fn", APP))
            await s.reconcile("fn")
            first, _ = s.pool_pods(2)
            s.mark_ready(first, "10.9.8.6")
            task = s.starter.wake(FunctionKey(namespace, "fn"))
            assert task is not None
            assert await asyncio.wait_for(task, 30) is None
            gone = get(kube_api, "pod", first["metadata"]["name"], namespace) is None
            assert gone is deleted
            [event] = [e for e in s.events("fn") if e["reason"] == "WarmStartFailed"]
            assert event["type"] == "Warning"
            assert said in event["message"]
            assert not s.operator.pool.serving(FunctionKey(namespace, "fn"))  # type: ignore[union-attr]

    run(body)


def test_status_says_why_a_function_takes_the_deployment_path(
    kube_api: ApiServer, crds: None, namespace: str
) -> None:
    async def body() -> None:
        async with scene(kube_api, namespace, FakeSpecializer()) as s:
            s.apply(inline_function("big", APP, memoryMB=256))
            status = (await s.reconcile("big"))["status"]
            assert status["coldStartPath"] == "deployment"
            assert status["coldStartReason"] == "memoryMB 256 differs from the pool's 128"
            assert s.starter.wake(FunctionKey(namespace, "big")) is None
            printed = kube_api.kubectl("get", "fn", "big", "-n", namespace, "-o", "wide").stdout
            assert "COLD START" in printed and "deployment" in printed

    run(body)
