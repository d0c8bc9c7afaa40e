"""Scenario: a schedule Trigger on the cluster wakes its Function from zero and invokes it once
per tick with EventBridge's Scheduled Event, and goes on, no tick fired twice, across a restart
of the operator between ticks. (The release runs the schedules' clock 60 times as fast,
tests/harness/release.py: rate(1 minute) ticks every second; the same code as in production.)

It replaces the operator's pod, so it runs after the scenarios that keep the release as is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.async_events.traffic import Recorder, recorder
from e2e.kit import FUNCTIONS_NAMESPACE, Installed, fail_on_crash, wait_for
from harness.cluster import Cluster
from harness.relay import Relay, relay
from harness.release import SELECTOR, SYSTEM_NAMESPACE

pytestmark = pytest.mark.disrupts_release

CODE = """
import json
import os
import urllib.request


def handler(event, context):
    body = json.dumps({"id": json.dumps([event["time"], context.aws_request_id, event])})
    request = urllib.request.Request(
        os.environ["RECORDER_URL"], data=body.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
"""


@pytest.fixture
def reports(e2e_cluster: Cluster) -> Iterator[tuple[Recorder, Relay]]:
    with recorder() as made, relay(e2e_cluster.node_ip, ("127.0.0.1", made.port)) as to_recorder:
        yield made, to_recorder


def ticks(made: Recorder) -> list[tuple[str, str, dict[str, Any]]]:
    return [tuple(json.loads(entry)) for entry in made.ids()]  # type: ignore[misc]


def test_a_schedule_fires_once_per_tick_across_an_operator_restart(
    e2e_cluster: Cluster, installed: Installed, reports: tuple[Recorder, Relay]
) -> None:
    made, to_recorder = reports
    recorder_url = to_recorder.url
    function = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "ticker", "namespace": FUNCTIONS_NAMESPACE},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "scaling": {"minReplicas": 0, "maxReplicas": 1},
            "env": [{"name": "RECORDER_URL", "value": recorder_url}],
            "network": {"egress": [{"cidr": f"{e2e_cluster.node_ip}/32"}]},
            "code": {"inline": {"files": {"app.py": CODE}}},
        },
    }
    trigger = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "every-minute", "namespace": FUNCTIONS_NAMESPACE},
        "spec": {"function": "ticker", "schedule": {"expression": "rate(1 minute)"}},
    }
    e2e_cluster.apply([function, trigger])

    def trigger_status() -> dict[str, Any]:
        found = e2e_cluster.get("trigger", "every-minute", "-n", FUNCTIONS_NAMESPACE)
        return dict(found.get("status") or {})

    wait_for(lambda: trigger_status().get("nextTick"), what="the Trigger's next tick", timeout=60)
    # From zero: the first tick wakes the function.
    wait_for(lambda: len(ticks(made)) >= 3, what="three ticks handled", timeout=240)
    before = trigger_status()["lastTick"]
    operator = f"{SELECTOR},app.kubernetes.io/component=operator"
    old = {
        p["metadata"]["uid"]
        for p in e2e_cluster.get("pods", "-n", SYSTEM_NAMESPACE, "-l", operator)["items"]
    }
    e2e_cluster.kubectl(
        "rollout", "restart", "deployment/kubelambda-operator", "-n", SYSTEM_NAMESPACE
    )

    def restarted() -> bool:
        fail_on_crash(e2e_cluster)
        pods = e2e_cluster.ready_pods(SYSTEM_NAMESPACE, operator)
        return bool(pods) and not {p["metadata"]["uid"] for p in pods} & old

    wait_for(restarted, what="a new operator pod Ready", timeout=180)
    wait_for(
        lambda: (
            trigger_status().get("lastTick", "") > before
            and len({t for t, _, _ in ticks(made) if t > before}) >= 3
        ),
        what="ticks after the operator's restart",
        timeout=180,
    )
    seen = ticks(made)
    per_tick = Counter(time for time, _, _ in seen)
    ids = {time: {request for t, request, _ in seen if t == time} for time in per_tick}
    # Delivery is at least once (a tick's event may run twice, with its one request id);
    # firing is once: a tick never has two request ids.
    assert all(len(requests) == 1 for requests in ids.values()), ids
    event = seen[0][2]
    assert (event["detail-type"], event["source"]) == ("Scheduled Event", "aws.events")
    assert event["resources"] == [
        f"arn:aws:events:us-east-1:000000000000:rule/{FUNCTIONS_NAMESPACE}.every-minute"
    ]
    print(
        f"schedule: {len(per_tick)} ticks handled across an operator restart, each fired once;"
        f" {sum(per_tick.values()) - len(per_tick)} repeated deliveries"
    )
