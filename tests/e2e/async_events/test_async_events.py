"""Scenario: no accepted asynchronous event is lost when the gateway and the dispatchers restart.

500 Event invocations go to the gateway's Service through the Invoke API (boto3, signed with an
access key, standard retries: a caller retries 503s and refused connections) while (a) the
gateway and dispatcher Deployments are rolled (`kubectl rollout restart`) and then (b) their
pods are force-deleted (`--grace-period=0 --force`). The function (one pod) reports each
invocation's request id to a recorder on the node; every id answered 202 must be among them.
Duplicates are allowed (delivery is at least once) and counted.

It replaces the release's pods, whose addresses the other scenarios hold, so it runs last
(tests/e2e/conftest.py).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from e2e.async_events.disruptions import force_delete, logs, roll
from e2e.async_events.traffic import Recorder, Sender, lambda_client
from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    Installed,
    access_key,
    fail_on_crash,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.relay import Relay

pytestmark = pytest.mark.disrupts_release

NAME = "tally"
EVENTS = 500
PACE = 0.2  # seconds between events: the stream spans both disruptions
KEY, SECRET = "AKIAE2EASYNCCALLER01", "e2e-async/secret+chars"
DEPLOYMENTS = ("gateway", "dispatcher")
HANDLED_TIMEOUT = 300.0  # after the last 202: a killed dispatcher's events return after ack_wait
CODE = """
import json
import os
import time
import urllib.request


def handler(event, context):
    # A second's work, more than the function keeps up with (4 at a time, 5 events a second):
    # the dispatcher always has deliveries in flight when it or the gateway is killed.
    time.sleep(1.0)
    # Reported before answering: an invocation counts as handled once it ran.
    body = json.dumps({"id": context.aws_request_id, "n": event["n"]}).encode()
    request = urllib.request.Request(
        os.environ["RECORDER_URL"], data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    return {"recorded": context.aws_request_id}
"""


def manifests(recorder_url: str, node_ip: str) -> list[dict[str, Any]]:
    function: dict[str, Any] = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": NAME, "namespace": FUNCTIONS_NAMESPACE},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "concurrency": 4,
            "timeoutSeconds": 15,
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "delivery": {"retries": 2, "backoffSeconds": 1},
            "env": [{"name": "RECORDER_URL", "value": recorder_url}],
            "network": {"egress": [{"cidr": f"{node_ip}/32"}]},
            "code": {"inline": {"files": {"app.py": CODE}}},
        },
    }
    caller = access_key(
        "e2e-async-caller", key=KEY, secret=SECRET, functions=f"{FUNCTIONS_NAMESPACE}/{NAME}"
    )
    return [function, caller]


def test_no_accepted_event_is_lost_across_gateway_and_dispatcher_restarts(
    e2e_cluster: Cluster,
    installed: Installed,
    reports: tuple[Recorder, Relay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    made, to_recorder = reports
    e2e_cluster.apply(manifests(to_recorder.url, e2e_cluster.node_ip))
    wait_function_ready(e2e_cluster, NAME)
    client = lambda_client(installed.gateway_service_url, key=KEY, secret=SECRET)

    # One event first, through the whole path: the caller's key, the broker, the dispatcher's
    # own key and the function's way to the recorder.
    warmup = Sender(client=client, function=NAME, total=1, interval=0, allowed=1)
    warmup.start()
    warmup.join(timeout=120)
    assert len(warmup.accepted) == 1, (warmup.refused, warmup.given_up, warmup.error)
    [first] = warmup.accepted
    wait_for(lambda: first in made.ids(), what=f"the first event {first} handled", timeout=120)

    began = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - began:.0f} s {what} ({len(sender.accepted)} sent)")

    sender = Sender(
        client=client, function=NAME, total=EVENTS, interval=PACE, allowed=EVENTS * 4 // 5
    )
    sender.start()
    assert sender.wait_accepted(100, timeout=120), (sender.given_up, sender.error)
    mark("rollout restart")
    roll(e2e_cluster, DEPLOYMENTS)
    mark("rolled out")
    # The force-deletion comes with events still to send: the sender holds at 400 until then.
    assert sender.wait_accepted(300, timeout=120), (sender.given_up, sender.error)
    mark("force delete")
    force_delete(e2e_cluster, DEPLOYMENTS)
    mark("new pods Ready")
    sender.allow(EVENTS)
    sender.join(timeout=EVENTS * PACE + 600)
    assert not sender.running(), "the sender did not finish"
    assert sender.error is None, repr(sender.error)
    sent_seconds = time.monotonic() - began

    accepted = set(sender.accepted)

    def all_handled() -> bool:
        fail_on_crash(e2e_cluster)
        return accepted <= set(made.ids())

    deadline = time.monotonic() + HANDLED_TIMEOUT
    while not all_handled() and time.monotonic() < deadline:
        time.sleep(0.5)
    seen = Counter(made.ids())
    handled = accepted & seen.keys()
    lost = accepted - seen.keys()
    duplicates = sum(count - 1 for count in seen.values())
    unseen_by_caller = seen.keys() - accepted - {first}
    mark("all handled" if not lost else "gave up waiting")
    with capsys.disabled():
        print(
            f"\nasync_events rollout: accepted {len(accepted)} handled {len(handled)} "
            f"lost {len(lost)} duplicates {duplicates}\n"
            f"  also handled: {len(unseen_by_caller)} whose 202 the caller never saw; "
            f"boto3's own retries: {sender.retried}; "
            f"retries exhausted: {dict(sender.given_up) or 0}; sent in {sent_seconds:.0f} s\n"
            f"  {'; '.join(timeline)}"
        )
    assert not lost, (
        f"{len(lost)} accepted events never handled, e.g. "
        f"{sorted((sender.accepted[i], i) for i in lost)[:5]}\n{logs(e2e_cluster, DEPLOYMENTS)}"
    )
    assert len(accepted) == EVENTS, f"not accepted within the caller's patience: {sender.refused}"
