"""resources/status.py and conditions.py: what Ready and Progressing say in every situation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kubelambda.api import parse_trigger
from kubelambda.controller.resources.conditions import Condition, merge_conditions
from kubelambda.controller.resources.status import (
    Blocked,
    DeploymentState,
    function_conditions,
    function_status,
    trigger_source_summary,
)
from unit.controller.conftest import NOW


def deployment(
    *,
    replicas: int | None,
    ready: int = 0,
    updated: int | None = None,
    total: int | None = None,
    observed: bool = True,
    deadline_exceeded: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    running = 1 if replicas is None else replicas  # the server's default is 1
    status: dict[str, Any] = {
        "readyReplicas": ready,
        "updatedReplicas": running if updated is None else updated,
        "replicas": running if total is None else total,
    }
    if observed:
        status["observedGeneration"] = 3
    if deadline_exceeded:
        status["conditions"] = [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "hello-1" has timed out progressing.',
            }
        ]
    return {"metadata": {"generation": 3}, "spec": spec, "status": status}


CASES = [
    # (case, deployment, minReplicas, Ready (status, reason), Progressing (status, reason))
    ("at zero", deployment(replicas=0), 0, ("True", "ScaledToZero"), ("False", "Complete")),
    ("all ready", deployment(replicas=2, ready=2), 1, ("True", "Available"), ("False", "Complete")),
    (
        "one of two ready",
        deployment(replicas=2, ready=1),
        0,
        ("True", "Available"),
        ("True", "Scaling"),
    ),
    ("woken from zero", deployment(replicas=1), 0, ("True", "Waking"), ("True", "Scaling")),
    ("minimum not up yet", deployment(replicas=2), 2, ("False", "Starting"), ("True", "Scaling")),
    (
        "new code rolling",
        deployment(replicas=2, ready=2, updated=1, total=3),
        1,
        ("True", "Available"),
        ("True", "RollingOut"),
    ),
    (
        "spec not seen yet",
        deployment(replicas=0, observed=False),
        0,
        ("True", "ScaledToZero"),
        ("True", "RollingOut"),
    ),
    (
        "rollout timed out",
        deployment(replicas=1, deadline_exceeded=True),
        0,
        ("False", "RolloutFailed"),
        ("False", "RolloutFailed"),
    ),
    (
        "replicas defaulted by the server",
        deployment(replicas=None),
        1,
        ("False", "Starting"),
        ("True", "Scaling"),
    ),
]


@pytest.mark.parametrize(
    ("live", "min_replicas", "ready", "progressing"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_conditions_from_the_deployment(
    live: dict[str, Any], min_replicas: int, ready: tuple[str, str], progressing: tuple[str, str]
) -> None:
    got_ready, got_progressing = function_conditions(
        blocked=None, deployment=DeploymentState.of(live), min_replicas=min_replicas
    )
    assert (got_ready.status, got_ready.reason) == ready
    assert (got_progressing.status, got_progressing.reason) == progressing
    assert got_ready.message and got_progressing.message


def test_a_blocked_function_is_neither_ready_nor_progressing() -> None:
    ready, progressing = function_conditions(
        blocked=Blocked("InvalidSpec", "spec.handler: bad"), deployment=None, min_replicas=0
    )
    assert ready == Condition("Ready", "False", "InvalidSpec", "spec.handler: bad")
    assert progressing == Condition("Progressing", "False", "InvalidSpec", "spec.handler: bad")


def test_conditions_have_all_five_fields_and_keep_their_transition_time() -> None:
    first = merge_conditions(
        [Condition("Ready", "True", "ScaledToZero", "m")], None, generation=1, now=NOW
    )
    assert first == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "ScaledToZero",
            "message": "m",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "observedGeneration": 1,
        }
    ]
    later = NOW + timedelta(minutes=5)
    same_status = merge_conditions(
        [Condition("Ready", "True", "Available", "1 of 1")], first, generation=2, now=later
    )
    assert same_status[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    flipped = merge_conditions(
        [Condition("Ready", "False", "Starting", "0 of 1")], first, generation=2, now=later
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_conditions_of_other_writers_are_kept() -> None:
    theirs = {
        "type": "Scaled",
        "status": "True",
        "reason": "Load",
        "message": "3 pods",
        "lastTransitionTime": "x",
    }
    merged = merge_conditions(
        [Condition("Ready", "True", "Available", "m")], [theirs], generation=1, now=NOW
    )
    assert [c["type"] for c in merged] == ["Ready", "Scaled"]
    assert merged[1] == theirs


def test_function_status_is_unchanged_when_nothing_changed() -> None:
    args: dict[str, Any] = {
        "generation": 3,
        "blocked": None,
        "deployment": DeploymentState.of(deployment(replicas=0)),
        "min_replicas": 0,
        "url": "http://gw/2015-03-31/functions/ns.hello/invocations",
        "code_hash": "sha256:1",
    }
    first = function_status(old=None, now=NOW, **args)
    assert first["replicas"] == 0 and first["readyReplicas"] == 0
    assert first["observedGeneration"] == 3
    assert function_status(old=first, now=NOW + timedelta(hours=1), **args) == first


def test_a_blocked_function_keeps_what_it_last_knew() -> None:
    before = {"replicas": 2, "readyReplicas": 1, "codeHash": "sha256:old", "url": "u"}
    status = function_status(
        old=before,
        generation=4,
        blocked=Blocked("InvalidSpec", "bad"),
        deployment=None,
        min_replicas=0,
        url=None,
        code_hash=None,
        now=NOW,
    )
    assert status["replicas"] == 2 and status["codeHash"] == "sha256:old"
    assert status["observedGeneration"] == 4


@pytest.mark.parametrize(
    ("spec", "summary"),
    [
        ({"http": {"path": "/hello"}}, "http ANY /hello"),
        (
            {"http": {"path": "/a", "methods": ["GET", "POST"], "host": "api.example.com"}},
            "http GET,POST api.example.com/a",
        ),
        ({"bucket": {"bucket": "photos"}}, "bucket photos"),
        (
            {"bucket": {"bucket": "photos", "prefix": "in/", "suffix": ".jpg"}},
            "bucket photos/in/*.jpg",
        ),
    ],
)
def test_trigger_source_summary(spec: dict[str, Any], summary: str) -> None:
    trigger = parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": "t"},
            "spec": {"function": "hello", **spec},
        }
    )
    assert trigger_source_summary(trigger) == summary
