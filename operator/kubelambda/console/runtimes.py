"""Function errors in local mode, as the runtimes count them: each ready instance's /metrics
(`kubelambda_runtime_invocations_total{outcome}`, on its invoke port) read at every sample, and
a running total per function that survives instances coming and going.

Lambda's Errors include handler errors the Invoke API answers with 200, which the gateway's
status codes cannot tell; the runtime can. `SampleRing` (samples.py) reads `totals` when it
samples; `kubelambda local` hands in the platform's ready instances.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance

__all__ = ["ERROR_OUTCOMES", "RuntimeErrors", "errors_in"]

log = logging.getLogger(__name__)
ERROR_OUTCOMES: Final = frozenset({"error", "timeout", "crash"})  # as the chart's alert counts
SCRAPE_TIMEOUT_SECONDS: Final = 2.0

Fetch = Callable[[str, float], bytes]


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


def errors_in(text: str) -> float:
    """The failed invocations in one runtime's /metrics text."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "kubelambda_runtime_invocations_total"
                and sample.labels.get("outcome") in ERROR_OUTCOMES
            ):
                total += sample.value
    return total


class RuntimeErrors:
    """Per function, the errors its instances counted since this object began reading them.

    An instance's count starts at 0 with its process; what an instance counted after its last
    read and before it stopped is not seen.
    """

    def __init__(
        self,
        *,
        functions: Iterable[FunctionKey],
        ready_instances: Callable[[FunctionKey], Sequence[Instance]],
        fetch: Fetch = _get,
    ) -> None:
        self._functions = tuple(functions)
        self._ready_instances = ready_instances
        self._fetch = fetch
        self._seen: dict[str, float] = {}  # instance id → its count at the last read
        self._totals: dict[FunctionKey, float] = {key: 0.0 for key in self._functions}

    def totals(self) -> Mapping[FunctionKey, float]:
        return dict(self._totals)

    def _read(self, instance: Instance) -> float | None:
        url = f"http://{instance.host}:{instance.port}/metrics"
        try:
            return errors_in(self._fetch(url, SCRAPE_TIMEOUT_SECONDS).decode("utf-8", "replace"))
        except (OSError, ValueError) as exc:  # stopping, or busy past the timeout: next time
            log.debug("console: cannot read %s: %s", url, exc)
            return None

    async def scrape(self) -> None:
        """Read every ready instance once (in threads, at once) and add what each counted since
        its previous read."""
        listed = [(key, i) for key in self._functions for i in self._ready_instances(key)]
        counts = await asyncio.gather(*(asyncio.to_thread(self._read, i) for _, i in listed))
        alive: set[str] = set()
        for (key, instance), count in zip(listed, counts, strict=True):
            alive.add(instance.id)
            if count is None:
                continue
            before = self._seen.get(instance.id, 0.0)
            self._totals[key] += count - before if count >= before else count
            self._seen[instance.id] = count
        for gone in self._seen.keys() - alive:
            del self._seen[gone]
