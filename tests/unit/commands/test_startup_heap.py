"""commands/heap.py and local mode's call of it: once `kubelambda local` serves, what start-up
made is frozen out of the garbage collector's full collections (the pauses that made the 202's
p99 swing), and KUBELAMBDA_GC_FREEZE=0 leaves it for a benchmark's comparison."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelambda.commands import local_options, local_serving
from kubelambda.commands.heap import YOUNG_THRESHOLD, freeze_startup_heap
from kubelambda.gateway.server import ServingAddresses

pytestmark = pytest.mark.anyio

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: idle}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {minReplicas: 0, maxReplicas: 1}
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              return event
"""


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts from a heap nothing froze, and leaves pytest's that way, with the
    collector's thresholds as they were."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Cycle:
    """An object that refers to itself: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_the_heap_is_frozen_after_a_collection() -> None:
    _Cycle()  # garbage at once, but kept by its cycle until a collection
    assert freeze_startup_heap({}) is True
    assert gc.get_freeze_count() > 0
    # Collected first, then frozen: start-up's garbage is not kept forever.
    assert not [o for o in gc.get_objects() if isinstance(o, _Cycle)]


def test_the_young_generation_is_collected_less_often() -> None:
    gc.set_threshold(700, 10, 10)  # Python's own
    freeze_startup_heap({})
    # Every collection walks the requests in flight again: fewer of them under load.
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert YOUNG_THRESHOLD > 700


def test_kubelambda_gc_freeze_0_leaves_the_heap_for_a_comparison() -> None:
    gc.set_threshold(700, 10, 10)
    assert freeze_startup_heap({"KUBELAMBDA_GC_FREEZE": "0"}) is False
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


async def test_local_mode_freezes_the_start_up_heap_once_it_serves(tmp_path: Path) -> None:
    manifest = tmp_path / "function.yaml"
    manifest.write_text(FUNCTION)
    args = local_options.build_parser().parse_args(
        [str(manifest), "--port", "0", "--admin-port", "0", "--no-console"]
    )
    frozen_when_ready: list[int] = []

    def ready(_: ServingAddresses) -> None:
        frozen_when_ready.append(gc.get_freeze_count())

    serving = asyncio.create_task(local_serving.serve(args, output=lambda _: None, on_ready=ready))
    try:
        async with asyncio.timeout(30):
            while not frozen_when_ready:
                if serving.done():
                    serving.result()  # raises what stopped it
                    pytest.fail("local mode stopped before it served")
                await asyncio.sleep(0.01)  # polling a condition, under the deadline above
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
    assert frozen_when_ready[0] > 0, "local mode served with its start-up heap unfrozen"
