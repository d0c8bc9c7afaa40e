"""resources/status.py with a warm pool: status.coldStartPath and coldStartReason say which path
a Function's cold start takes, only while a pool runs, and go when it stops."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.controller.resources.status import (
    FUNCTION_STATUS_KEYS,
    DeploymentState,
    function_status,
)
from kubelambda.controller.statuswrite import status_patch
from unit.controller.conftest import NOW

AT_ZERO = DeploymentState(desired=0, ready=0, updated=0, total=0, current=True, failure=None)


def status(
    cold_start: tuple[str, str | None] | None, old: dict[str, Any] | None = None
) -> dict[str, Any]:
    return function_status(
        old=old,
        generation=1,
        blocked=None,
        deployment=AT_ZERO,
        min_replicas=0,
        url=None,
        code_hash=None,
        now=NOW,
        cold_start=cold_start,
    )


@pytest.mark.parametrize(
    ("cold_start", "fields"),
    [
        (("pool", None), {"coldStartPath": "pool"}),
        (
            ("deployment", "code from a package (spec.code.s3)"),
            {
                "coldStartPath": "deployment",
                "coldStartReason": "code from a package (spec.code.s3)",
            },
        ),
        (None, {}),
    ],
)
def test_the_cold_start_path_is_in_status(
    cold_start: tuple[str, str | None] | None, fields: dict[str, str]
) -> None:
    found = status(cold_start)
    assert {k: v for k, v in found.items() if k.startswith("coldStart")} == fields


def test_both_fields_go_when_the_pool_is_turned_off() -> None:
    before = status(("deployment", "memoryMB 256 differs from the pool's 128"))
    after = status(None, old=before)
    assert status_patch(before, after, owned=FUNCTION_STATUS_KEYS) == {
        "coldStartPath": None,
        "coldStartReason": None,
    }
