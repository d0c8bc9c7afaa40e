"""The valid Functions and Triggers of the cluster (or of some namespaces), kept current by
informers: what the gateway routes and the dispatcher's pollers consume. An invalid object is
left out with a log line; the controller reports it on the object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from kubelambda.api import Function, SpecError, Trigger, parse_function, parse_trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import FUNCTION, TRIGGER

__all__ = ["SpecWatch", "object_key"]

logger = logging.getLogger(__name__)


class SpecWatch:
    """``on_specs`` is called on the loop with all valid Functions and Triggers after they
    change, once for the changes that arrived together (the informers' initial listing, a
    `kubectl apply` of many objects). Each list is a dict's values: an object that changed
    is a new object in its old place, a new one comes last, so the gateway finds what changed
    by identity and updates its routing table by that alone (gateway/tableupdates.py; a
    change at 15,000 routes: benchmarks/scale_gateway_routes.py). ``on_function`` is called at
    once with the key of a Function that changed (or went). An event that leaves an object's
    parsed spec as it was (its status written: the controller's, the autoscaler's decisions,
    the scheduler's ticks) calls neither: at 15,000 Functions each such call cost the gateway
    5 ms of CPU (the table updated, the instances looked up again). Events come on the
    running loop.
    """

    def __init__(
        self,
        *,
        on_specs: Callable[[Sequence[Function], Sequence[Trigger]], None] | None = None,
        on_function: Callable[[FunctionKey], None] | None = None,
    ) -> None:
        self.on_specs = on_specs
        self.on_function = on_function
        self._functions: dict[FunctionKey, Function] = {}
        self._triggers: dict[tuple[str, str], Trigger] = {}
        self._notifying = False

    def functions(self) -> list[Function]:
        return list(self._functions.values())

    def triggers(self) -> list[Trigger]:
        return list(self._triggers.values())

    def function(self, key: FunctionKey) -> Function | None:
        return self._functions.get(key)

    def informers(
        self, client: KubeClient, namespaces: Sequence[str], loop: asyncio.AbstractEventLoop
    ) -> list[Informer]:
        """Informers of both kinds (not started), in each of `namespaces` (none: all)."""
        return [
            Informer(client, kind, on_event=handler, loop=loop, namespace=namespace)
            for kind, handler in ((FUNCTION, self.function_event), (TRIGGER, self.trigger_event))
            for namespace in namespaces or (None,)
        ]

    def function_event(self, event_type: str, body: JSON) -> None:
        key = FunctionKey(*object_key(body))
        if event_type == "DELETED":
            self._functions.pop(key, None)
        else:
            try:
                function = parse_function(body)
            except SpecError as exc:
                logger.warning("Function %s/%s is invalid, left out: %s", *key, exc)
                self._functions.pop(key, None)
            else:
                if self._functions.get(key) == function:
                    return  # its status changed, or nothing else the gateway reads
                self._functions[key] = function
        if self.on_function is not None:
            self.on_function(key)
        self._changed()

    def trigger_event(self, event_type: str, body: JSON) -> None:
        key = object_key(body)
        if event_type == "DELETED":
            self._triggers.pop(key, None)
        else:
            try:
                trigger = parse_trigger(body)
            except SpecError as exc:
                logger.warning("Trigger %s/%s is invalid, left out: %s", *key, exc)
                self._triggers.pop(key, None)
            else:
                if self._triggers.get(key) == trigger:
                    return  # its status changed (the scheduler's lastTick), or nothing else read
                self._triggers[key] = trigger
        self._changed()

    def _changed(self) -> None:
        # After the events already queued on the loop: they are taken in the same call.
        if self.on_specs is not None and not self._notifying:
            self._notifying = True
            asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notifying = False
        if self.on_specs is not None:
            self.on_specs(self.functions(), self.triggers())


def object_key(body: JSON) -> tuple[str, str]:
    meta = body["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])
