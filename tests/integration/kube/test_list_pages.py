"""Lists in pages on the real API server: KubeClient.list_pages reads a kind a page at a time
from one snapshot, and the gateway's Informer hands each page on to its loop before it asks
for the next, so that a first listing of 15,000 Functions holds a page, not all of them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

from harness.apiserver import ApiServer
from kubelambda.platforms.kubernetes.client import JSON, KubeClient, ObjectList
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import CONFIG_MAP

LABEL = "kubelambda.test/paged"


def _config_maps(kube_api: ApiServer, namespace: str, count: int) -> set[str]:
    names = {f"cm-{n}" for n in range(count)}
    items = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: "yes"}},
        }
        for name in names
    ]
    kube_api.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    return names


def test_a_list_comes_in_pages_of_one_snapshot(kube_api: ApiServer, namespace: str) -> None:
    names = _config_maps(kube_api, namespace, 7)
    client = KubeClient.from_config(kube_api.kubeconfig)
    try:
        pages = list(
            client.list_pages(
                CONFIG_MAP, namespace=namespace, label_selector=f"{LABEL}=yes", page_size=3
            )
        )
        whole = client.list_objects(CONFIG_MAP, namespace=namespace, label_selector=f"{LABEL}=yes")
    finally:
        client.close()
    assert [len(page.items) for page in pages] == [3, 3, 1]
    assert {item["metadata"]["name"] for page in pages for item in page.items} == names
    assert len({page.resource_version for page in pages}) == 1
    assert {item["metadata"]["name"] for item in whole.items} == names


class _Recording(KubeClient):
    """Notes, as each page of a list arrives, how many events the loop had taken by then."""

    def __init__(self, *args: Any, taken: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = taken
        self.taken_at_each_page: list[int] = []

    def list_pages(self, *args: Any, **kwargs: Any) -> Iterator[ObjectList]:
        for page in super().list_pages(*args, **kwargs):
            self.taken_at_each_page.append(len(self.taken))
            yield page


def test_an_informer_hands_each_page_on_before_it_asks_for_the_next(
    kube_api: ApiServer, namespace: str
) -> None:
    names = _config_maps(kube_api, namespace, 5)
    taken: list[str] = []
    settings = KubeClient.from_config(kube_api.kubeconfig)._settings
    client = _Recording(settings, taken=taken)

    def on_event(event_type: str, obj: JSON) -> None:
        time.sleep(0.05)  # a busy loop: pages would pile up for it, were they not handed on
        taken.append(obj["metadata"]["name"])

    async def body() -> None:
        informer = Informer(
            client,
            CONFIG_MAP,
            on_event=on_event,
            loop=asyncio.get_running_loop(),
            namespace=namespace,
            label_selector=f"{LABEL}=yes",
            page_size=2,
        )
        informer.start()
        try:
            await asyncio.wait_for(informer.synced.wait(), 30)
        finally:
            informer.stop()

    try:
        asyncio.run(body())
    finally:
        client.close()
    assert set(taken) == names
    assert client.taken_at_each_page == [0, 2, 4]
