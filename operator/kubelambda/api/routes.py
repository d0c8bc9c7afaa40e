"""Who owns an HTTP path: a path, and every path below it, belongs to the namespace of the
oldest Trigger that claims it or a path above it on the same host, as the Gateway API
settles conflicts. A later claim from another namespace is refused, so one namespace's
traffic never reaches another's function; within a namespace, two Triggers on the same
host, path and methods are refused alike.

The gateway's routing table leaves refused Triggers out and says why; local mode prints it.
When one Trigger changes, the gateway decides again only the claims `ClaimedPaths.around` its
path (gateway/tableupdates.py), with the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from kubelambda.api.trigger import HttpSource, Trigger

__all__ = ["ClaimedPaths", "RouteConflict", "claim_age", "claim_segments", "route_conflicts"]


@dataclass(frozen=True, slots=True)
class RouteConflict:
    """A Trigger whose route is refused, the one that holds it, and why."""

    trigger: Trigger
    owner: Trigger
    message: str


def claim_segments(path: str) -> tuple[str, ...]:
    """A claimed path's decoded segments: "/a/b/" and "/a/b" claim the same path."""
    stripped = unquote(path).strip("/")
    return tuple(stripped.split("/")) if stripped else ()


def _nested(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One path is the other or lies below it, by whole segments."""
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    return longer[: len(shorter)] == shorter


def _hosts_meet(a: HttpSource, b: HttpSource) -> bool:
    return a.host is None or b.host is None or a.host.lower() == b.host.lower()


def _methods_meet(a: HttpSource, b: HttpSource) -> bool:
    return "ANY" in a.methods or "ANY" in b.methods or bool(set(a.methods) & set(b.methods))


def _where(source: HttpSource) -> str:
    return f"{source.path} on {source.host or 'every host'}"


def _conflict(
    candidate: Trigger, mine: HttpSource, held: Trigger, theirs: HttpSource
) -> str | None:
    if not _hosts_meet(mine, theirs):
        return None
    own, other = claim_segments(mine.path), claim_segments(theirs.path)
    if held.namespace != candidate.namespace:
        if not _nested(own, other):
            return None
        return (
            f"path {_where(mine)} overlaps {_where(theirs)}, which belongs to namespace "
            f"{held.namespace} (Trigger {held.namespace}/{held.name}, the older claim): "
            "a path and the paths below it belong to one namespace"
        )
    same_host = (mine.host or "").lower() == (theirs.host or "").lower()
    if own == other and same_host and _methods_meet(mine, theirs):
        return (
            f"Trigger {held.namespace}/{held.name} (the older claim) already routes "
            f"{_where(mine)} for the same methods"
        )
    return None


class _Claims:
    """Held claims in a tree of path segments, so a candidate meets only the claims on its
    own path, above it and below it: building a table stays near-linear in Triggers."""

    def __init__(self) -> None:
        self.here: list[tuple[Trigger, HttpSource]] = []
        self.below: dict[str, _Claims] = {}

    def add(self, segments: tuple[str, ...], claim: tuple[Trigger, HttpSource]) -> None:
        node = self
        for segment in segments:
            node = node.below.setdefault(segment, _Claims())
        node.here.append(claim)

    def meeting(self, segments: tuple[str, ...]) -> list[tuple[Trigger, HttpSource]]:
        """Claims on `segments`, on a path above it, or below it; oldest first per node."""
        found: list[tuple[Trigger, HttpSource]] = []
        node = self
        for segment in segments:
            found += node.here
            child = node.below.get(segment)
            if child is None:
                return found
            node = child
        return found + node._subtree()

    def _subtree(self) -> list[tuple[Trigger, HttpSource]]:
        found = list(self.here)
        for child in self.below.values():
            found += child._subtree()
        return found


def claim_age(trigger: Trigger, position: int) -> tuple[str, str, str, int]:
    """Oldest first; a tie in creation time (whole seconds) goes to the alphabetically
    first namespace/name, as in the Gateway API, so every process decides alike whatever
    order it saw the Triggers in. Manifest files have no creation time: their order does."""
    if not trigger.created:
        return ("", "", "", position)
    return (trigger.created, trigger.namespace, trigger.name, 0)


def route_conflicts(triggers: Iterable[Trigger]) -> list[RouteConflict]:
    """The HTTP Triggers refused, oldest claims first (`claim_age`); the others are routed."""
    http = [(t, t.source) for t in triggers if isinstance(t.source, HttpSource)]
    ordered = sorted(enumerate(http), key=lambda item: claim_age(item[1][0], item[0]))
    held = _Claims()
    refused: list[RouteConflict] = []
    for _, (candidate, source) in ordered:
        segments = claim_segments(source.path)
        for owner, owned in held.meeting(segments):
            message = _conflict(candidate, source, owner, owned)
            if message is not None:
                refused.append(RouteConflict(trigger=candidate, owner=owner, message=message))
                break
        else:
            held.add(segments, (candidate, source))
    return refused


class ClaimedPaths:
    """Every HTTP Trigger's path (routed or refused, on any host), in a tree of segments, for
    the gateway's incremental routing table. A claim meets only claims on its own path, above
    it or below it, so whether a claim on `segments` is refused, and which claims its change
    can refuse or free, is settled among the Triggers `around` it."""

    __slots__ = ("_below", "_here")

    def __init__(self) -> None:
        # (namespace, name) of the Triggers claiming this path: a list, a third of an empty
        # set's size, and a path has one or two.
        self._here: list[tuple[str, str]] = []
        self._below: dict[str, ClaimedPaths] = {}

    def add(self, segments: tuple[str, ...], trigger: tuple[str, str]) -> None:
        node = self
        for segment in segments:
            node = node._below.setdefault(segment, ClaimedPaths())
        if trigger not in node._here:
            node._here.append(trigger)

    def remove(self, segments: tuple[str, ...], trigger: tuple[str, str]) -> None:
        trail: list[tuple[ClaimedPaths, str]] = []
        node = self
        for segment in segments:
            child = node._below.get(segment)
            if child is None:
                return
            trail.append((node, segment))
            node = child
        if trigger in node._here:
            node._here.remove(trigger)
        # Paths nobody claims any more go, so the tree holds what is claimed, no more.
        for parent, segment in reversed(trail):
            child = parent._below[segment]
            if child._here or child._below:
                break
            del parent._below[segment]

    def around(self, segments: tuple[str, ...]) -> set[tuple[str, str]]:
        """The Triggers under the shortest claimed path at or above `segments` (under
        `segments` when none is claimed): no claim outside them meets one inside, so their
        decisions can be taken again among themselves."""
        node = self
        for segment in segments:
            if node._here:
                break
            child = node._below.get(segment)
            if child is None:
                return set()
            node = child
        found: set[tuple[str, str]] = set()
        stack = [node]
        while stack:
            node = stack.pop()
            found.update(node._here)
            stack.extend(node._below.values())
        return found
