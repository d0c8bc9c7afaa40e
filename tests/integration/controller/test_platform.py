"""The gateway's KubernetesPlatform on a real API server: its watches see a Function the
operator serves, its Trigger, and the pods of the Function's EndpointSlices as they become
ready and go (slices written by hand: there are no nodes, so no pod ever becomes ready)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from harness.apiserver import ApiServer
from integration.controller.operating import OperatorProcess, wait_condition
from kubelambda.api import Function, Trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.platform import KubernetesPlatform
from support.waiting import wait_for

DEADLINE = 30.0


def manifests(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "hello", "namespace": namespace},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "concurrency": 2,
                "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return e\n"}}},
            },
        },
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "hello-http", "namespace": namespace},
            "spec": {"function": "hello", "http": {"path": "/hello"}},
        },
    ]


def endpoint_slice(
    namespace: str, *, ready: bool, service_uid: str, manager: str = "tests", ip: str = "10.244.0.7"
) -> dict[str, Any]:
    """What the EndpointSlice controller writes for the Function's Service, labels and owner
    included, but managed by "tests" (the real controller would take a slice of its own
    back): the platform under test trusts that manager, as it trusts the real one."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"hello-{manager}",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": "hello",
                "kubelambda.dev/function": "hello",
                "endpointslice.kubernetes.io/managed-by": manager,
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": "hello",
                    "uid": service_uid,
                    "controller": True,
                }
            ],
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": "hello-abc", "namespace": namespace},
            }
        ],
    }


def test_instances_and_specs_arrive_by_watch(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    key = FunctionKey(namespace, "hello")
    kube_api.kubectl(
        "apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests(namespace))
    )
    wait_condition(kube_api, "fn", "hello", namespace, reason="ScaledToZero")
    # The EndpointSlice controller copies the Service's labels onto its slices: the platform's
    # label selector finds real slices, not only the hand-written one below.
    wait_for(
        lambda: json.loads(
            kube_api.kubectl(
                "get",
                "endpointslices",
                "-n",
                namespace,
                "-l",
                "kubelambda.dev/function=hello",
                "-o",
                "json",
            ).stdout
        )["items"],
        timeout=60,
        what="the EndpointSlice controller's slice of Service hello, with the Function label",
    )

    async def scenario() -> None:
        seen: asyncio.Queue[tuple[FunctionKey, tuple[Instance, ...]]] = asyncio.Queue()
        specs: asyncio.Queue[tuple[list[str], list[str]]] = asyncio.Queue()

        def on_specs(functions: Sequence[Function], triggers: Sequence[Trigger]) -> None:
            specs.put_nowait(
                (
                    sorted(f.name for f in functions if f.namespace == namespace),
                    sorted(t.name for t in triggers if t.namespace == namespace),
                )
            )

        async def waker(_: FunctionKey, __: int) -> None:
            pass

        platform = KubernetesPlatform(
            client=KubeClient.from_config(kube_api.kubeconfig),
            waker=waker,
            on_specs=on_specs,
            namespaces=[namespace],
            slice_managers=frozenset({"tests"}),
        )
        platform.subscribe(lambda k, instances: seen.put_nowait((k, tuple(instances))))
        async with asyncio.timeout(DEADLINE):
            await platform.start()
            while await specs.get() != (["hello"], ["hello-http"]):
                pass
            assert platform.ready_instances(key) == ()

            service_uid = (
                await asyncio.to_thread(
                    kube_api.kubectl,
                    "get",
                    "service",
                    "hello",
                    "-n",
                    namespace,
                    "-o",
                    "jsonpath={.metadata.uid}",
                )
            ).stdout
            # A slice someone else wrote, with the Function's labels, gets no traffic: had
            # it been taken, its instance would be the first one seen.
            forged = endpoint_slice(
                namespace, ready=True, service_uid=service_uid, manager="someone", ip="10.244.0.66"
            )
            await asyncio.to_thread(kube_api.kubectl, "apply", "-f", "-", input=json.dumps(forged))
            ours = endpoint_slice(namespace, ready=True, service_uid=service_uid)
            await asyncio.to_thread(kube_api.kubectl, "apply", "-f", "-", input=json.dumps(ours))
            assert await seen.get() == (
                key,
                (Instance(id="hello-abc", host="10.244.0.7", port=8080, concurrency=2),),
            )

            await asyncio.to_thread(
                kube_api.kubectl,
                "apply",
                "-f",
                "-",
                input=json.dumps(endpoint_slice(namespace, ready=False, service_uid=service_uid)),
            )
            assert await seen.get() == (key, ())

            await asyncio.to_thread(
                kube_api.kubectl, "delete", "trigger", "hello-http", "-n", namespace
            )
            while await specs.get() != (["hello"], []):
                pass
        platform.stop()

    asyncio.run(scenario())
