"""platforms/kubernetes/watches.py without a server: kopf runs with a memory that keeps no
record of the objects it has handled, so the operator's memory does not grow with them."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from kubelambda.platforms.kubernetes import watches
from kubelambda.platforms.kubernetes.watches import ForgetfulMemories


def body(n: int) -> kopf.RawBody:
    return {"metadata": {"uid": f"uid-{n}", "name": f"fn-{n}", "namespace": "bench"}}


def test_records_are_not_kept_between_events() -> None:
    memories = ForgetfulMemories()

    async def recall_all() -> None:
        for n in range(1000):
            memory = await memories.recall(body(n), noticed_by_listing=True)
            assert memory.noticed_by_listing  # still a whole record while the event is handled

    asyncio.run(recall_all())
    assert memories.remembered() == 0


def test_kopf_runs_with_the_forgetful_memories(monkeypatch: pytest.MonkeyPatch) -> None:
    given: dict[str, Any] = {}

    async def operator(**kwargs: Any) -> None:
        given.update(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    asyncio.run(
        watches.run(
            kopf.OperatorRegistry(),
            namespaces=["bench"],
            liveness_endpoint=None,
            stop=asyncio.Event(),
        )
    )
    assert isinstance(given["memories"], ForgetfulMemories)
