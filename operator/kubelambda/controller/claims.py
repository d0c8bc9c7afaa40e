"""The controller's view of who owns each HTTP path, so a Trigger that loses its path to an
older claim says so in its status (``Ready=False RouteConflict``), as the gateway, which
decides with the same rules (api.routes), leaves it out of its routing table.

The operator's intake keeps the claims current (``put``/``remove``); the Trigger reconciler
asks for one Trigger's refusal. Claims are grouped by the first segment of their path,
because only paths that nest can conflict: a change re-decides its own group, once, at the
next reconcile, however many watch events came before it (a restart lists every Trigger).
"""

from __future__ import annotations

from collections.abc import Iterable

from kubelambda.api.routes import RouteConflict, route_conflicts
from kubelambda.api.trigger import HttpSource, Trigger

__all__ = ["RouteClaims"]

Name = tuple[str, str]
# The group of Triggers on "/": they nest with every path, so they meet every group.
_ROOT = ""
_ALL = "/"


def _group(source: HttpSource) -> str:
    return source.path.strip("/").split("/", 1)[0]


class RouteClaims:
    def __init__(self) -> None:
        self._groups: dict[str, dict[Name, Trigger]] = {}
        self._where: dict[Name, str] = {}
        self._dirty: set[str] = set()
        # The refusals of each group, as of the last `settle` (_ALL: every group together).
        self._decided: dict[str, dict[Name, RouteConflict]] = {}

    def put(self, trigger: Trigger) -> None:
        """Record a valid Trigger (a bucket Trigger claims no path: it is only dropped)."""
        name = (trigger.namespace, trigger.name)
        source = trigger.source
        if not isinstance(source, HttpSource):
            self.remove(name)
            return
        group = _group(source)
        if self._where.get(name) not in (None, group):
            self.remove(name)
        members = self._groups.setdefault(group, {})
        if members.get(name) != trigger:
            members[name] = trigger
            self._where[name] = group
            self._dirty.add(group)

    def remove(self, name: Name) -> None:
        """Forget a Trigger: deleted, invalid, or no longer an HTTP Trigger."""
        group = self._where.pop(name, None)
        if group is None:
            return
        members = self._groups[group]
        del members[name]
        if not members:
            del self._groups[group]
        self._dirty.add(group)

    def settle(self) -> set[Name]:
        """Decide the groups changed since the last call; the Triggers whose refusal
        changed (newly refused, newly routed, or refused for another reason)."""
        if not self._dirty:
            return set()
        before = self._refusals()
        if _ROOT in self._groups or _ALL in self._decided:
            # A claim on "/" meets every path: decide everything together (rare).
            self._decided.clear()
            everyone = [t for members in self._groups.values() for t in members.values()]
            self._decided[_ALL] = _decide(everyone)
        else:
            for group in self._dirty:
                self._decided[group] = _decide(self._groups.get(group, {}).values())
        self._dirty.clear()
        after = self._refusals()
        return {
            name
            for name in before.keys() | after.keys()
            if _message(before.get(name)) != _message(after.get(name))
        }

    def refusal(self, namespace: str, name: str) -> RouteConflict | None:
        """Why this Trigger's route is refused, as of the last `settle`; None if it is not."""
        for refusals in self._decided.values():
            if (found := refusals.get((namespace, name))) is not None:
                return found
        return None

    def _refusals(self) -> dict[Name, RouteConflict]:
        return {name: c for refusals in self._decided.values() for name, c in refusals.items()}


def _decide(triggers: Iterable[Trigger]) -> dict[Name, RouteConflict]:
    return {(c.trigger.namespace, c.trigger.name): c for c in route_conflicts(triggers)}


def _message(conflict: RouteConflict | None) -> str | None:
    return conflict.message if conflict is not None else None
