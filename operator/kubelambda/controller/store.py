"""The operator's copy of the objects it watches, fed by kopf's watch events and by the answers
to its own writes; the reconcilers read it instead of asking the API server.

The two feeds race: the answer to a write can come back after the watch has shown a later
change (the Deployment controller's first status, seen before the answer to the replicas
handover), so a copy never replaces a newer one. resourceVersions are compared as the API
server defines them since Kubernetes 1.35 (KEP-5504); versions that do not compare fall
back to "the last copy wins". For the same reason the store remembers deletions for a while:
the answer to a write that a deletion overtook must not bring the deleted object back, or
the reconcile that the DELETED event queued would take it for live and not create it again.

Only what the reconcilers need is kept: managedFields are cut down to the replicas owners and
the controller's creation entry (managedfields.py). Objects are kept as compact JSON, deflated
(``_Codec``), many times smaller than the dicts they decode to, which is what keeps the
operator's memory flat with thousands of Functions; ``get`` decodes a fresh copy, so callers
may change what they get.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Final

from kubelambda import jsonvalue
from kubelambda.controller.managedfields import slim_managed_fields
from kubelambda.platforms.kubernetes.kinds import Kind

__all__ = ["MAX_TOMBSTONES", "TOMBSTONE_SECONDS", "Seen", "Store", "newer"]

JSON = dict[str, Any]
logger = logging.getLogger(__name__)

# A deletion needs remembering only until the answers to the writes sent before it are back.
# The API client gives up on a request after 30 s (KubeClient's timeout), so two minutes
# leave room for a busy event loop; a time bound also lets tombstones drain by themselves
# after a burst, with no sweeping task. The count bound caps the memory whatever the rate of
# deletions (a namespace with thousands of Functions going at once): about 2 MB at most,
# oldest dropped first, and a tombstone dropped early only loses this protection.
TOMBSTONE_SECONDS: Final = 120.0
MAX_TOMBSTONES: Final = 10_000


def _name_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


# An 8 KiB window and small hash tables: zlib's defaults (32 KiB, memLevel 8) make each
# compressor allocate and clear about 270 KiB, which took three quarters of an encode's time.
# Objects and the dictionary rarely exceed the window; when they do, only the ratio suffers.
_WBITS: Final = 13
_MEM_LEVEL: Final = 4


class _Codec:
    """Compact JSON, deflated against the first object of its kind as a preset dictionary:
    objects of one kind differ in little but names, hashes and versions, so a Deployment
    keeps in about a tenth of its JSON."""

    def __init__(self) -> None:
        self._dictionary: bytes | None = None

    def encode(self, obj: Mapping[str, Any]) -> bytes:
        raw = jsonvalue.dumps(obj)
        if self._dictionary is None:
            self._dictionary = raw
        deflate = zlib.compressobj(1, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=self._dictionary)
        return deflate.compress(raw) + deflate.flush()

    def decode(self, encoded: bytes) -> JSON:
        assert self._dictionary is not None
        inflate = zlib.decompressobj(_WBITS, zdict=self._dictionary)
        decoded: JSON = jsonvalue.loads(inflate.decompress(encoded))
        return decoded


def _ordinal(version: object) -> int | None:
    """A resourceVersion as a number, or None when it is not a comparable one."""
    if not isinstance(version, str) or not (version.isascii() and version.isdigit()):
        return None
    return int(version) if version[0] != "0" else None


def newer(version: object, than: object) -> bool:
    """True when resourceVersion ``version`` is known to be later than ``than`` (two versions of
    one object). Since KEP-5504 (GA in Kubernetes 1.35; etcd revisions before that) they
    are positive integers without leading zeros; anything else is never known to be later."""
    mine, theirs = _ordinal(version), _ordinal(than)
    return mine is not None and theirs is not None and mine > theirs


def _not_after(version: object, than: str | None) -> bool:
    """True when resourceVersion ``version`` is known to be ``than`` or an earlier one."""
    return version is not None and (str(version) == than or newer(than, version))


Refers = Callable[[Mapping[str, Any]], str | None]
"""What an object refers to by name in its namespace (a Trigger: its Function), or None."""

Seen = set[tuple[Kind, str, str, str]]
"""(kind, namespace, name, resourceVersion) of the copies one reconcile put: read or written."""

_SEEN: ContextVar[Seen | None] = ContextVar("kubelambda_store_seen", default=None)


class Store:
    """Objects by kind, namespace and name, and the versions at which recent ones were deleted
    (tombstones). ``refers`` names, for some kinds, what their objects refer to (a Trigger:
    its Function): ``referring`` answers which objects refer to a name without decoding any.
    Not thread-safe: used on the event loop only."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        tombstone_seconds: float = TOMBSTONE_SECONDS,
        max_tombstones: int = MAX_TOMBSTONES,
        refers: Mapping[Kind, Refers] | None = None,
    ) -> None:
        self._objects: dict[Kind, dict[tuple[str, str], bytes]] = {}
        self._refers = dict(refers or {})
        # kind -> object -> what it refers to; kind -> (namespace, what) -> the objects' names
        self._reference: dict[Kind, dict[tuple[str, str], str]] = {}
        self._referring: dict[Kind, dict[tuple[str, str], set[str]]] = {}
        self._versions: dict[Kind, dict[tuple[str, str], str]] = {}
        self._codecs: dict[Kind, _Codec] = {}
        # (kind, namespace, name) -> (version deleted at, when to forget it), oldest first:
        # every tombstone lives equally long, so the order of insertion is that of expiry.
        self._tombstones: dict[tuple[Kind, str, str], tuple[str, float]] = {}
        self._clock = clock
        self._tombstone_seconds = tombstone_seconds
        self._max_tombstones = max_tombstones

    @staticmethod
    @contextlib.contextmanager
    def recording() -> Iterator[Seen]:
        """Collects the version of every copy put from this context (a reconcile, and the tasks
        it starts) until the block ends: a watch event at one of them tells that reconcile
        nothing new (the operator's requeue rule, operator.py)."""
        seen: Seen = set()
        token = _SEEN.set(seen)
        try:
            yield seen
        finally:
            _SEEN.reset(token)

    def put(self, kind: Kind, obj: Mapping[str, Any]) -> JSON | None:
        """Keep a slimmed copy of ``obj`` in place of what was there, and return it; when the
        store already has a newer version, keep and return that one instead. Were the older
        copy kept, the reconcile that follows the newer event would read it, and no later
        event would come to correct it.

        None when ``obj`` was deleted since (a tombstone at its version or a later one): the
        object stays absent. A newer version (created again) is kept and ends the tombstone."""
        where = _name_of(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        seen = _SEEN.get()
        if seen is not None and version is not None:
            seen.add((kind, *where, str(version)))
        deleted = self._deleted(kind, where)
        if deleted is not None:
            if _not_after(version, deleted):
                logger.debug(
                    "%s %s/%s: not keeping version %s, deleted at %s",
                    kind.kind,
                    *where,
                    version,
                    deleted,
                )
                return None
            del self._tombstones[(kind, *where)]
        known = self._versions.get(kind, {}).get(where)
        if newer(known, version):
            logger.debug(
                "%s %s/%s: kept version %s over older %s", kind.kind, *where, known, version
            )
            return self._codec(kind).decode(self._objects[kind][where])
        kept = slim_managed_fields(obj)
        self._objects.setdefault(kind, {})[where] = self._codec(kind).encode(kept)
        refers = self._refers.get(kind)
        if refers is not None:
            self._unrefer(kind, where)
            target = refers(kept)
            if target is not None:
                self._reference.setdefault(kind, {})[where] = target
                self._referring.setdefault(kind, {}).setdefault((where[0], target), set()).add(
                    where[1]
                )
        if version is not None:
            self._versions.setdefault(kind, {})[where] = str(version)
        else:
            self._versions.get(kind, {}).pop(where, None)
        return kept

    def holds(self, kind: Kind, obj: Mapping[str, Any]) -> bool:
        """True when the store already has ``obj`` at its resourceVersion or a later one: a
        watch event that only echoes the operator's own write, repeats what was seen, or was
        overtaken by the answer to a later write or by the object's deletion."""
        where = _name_of(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        known = self._versions.get(kind, {}).get(where)
        if known is None:
            known = self._deleted(kind, where)
        return _not_after(version, known)

    def remove(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        """Forget ``obj`` (the object of a DELETED event), leaving a tombstone at its version
        (the API server sends the version of the deletion) or, lacking one, at the version
        the store had."""
        where = _name_of(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        self._objects.get(kind, {}).pop(where, None)
        self._unrefer(kind, where)
        known = self._versions.get(kind, {}).pop(where, None)
        last = known if version is None or newer(known, version) else str(version)
        if last is None:
            return  # no version to compare copies with: they fall back to the last one wins
        key = (kind, *where)
        self._tombstones.pop(key, None)  # inserted again at the end, the youngest
        now = self._clock()
        self._tombstones[key] = (last, now + self._tombstone_seconds)
        self._forget_tombstones(now)

    def _unrefer(self, kind: Kind, where: tuple[str, str]) -> None:
        target = self._reference.get(kind, {}).pop(where, None)
        if target is None:
            return
        referring = self._referring[kind]
        names = referring[(where[0], target)]
        names.discard(where[1])
        if not names:
            del referring[(where[0], target)]

    def referring(self, kind: Kind, *, namespace: str, name: str) -> list[str]:
        """The names of the stored objects of ``kind`` in ``namespace`` that refer to ``name``
        (a kind given to ``refers``)."""
        return sorted(self._referring.get(kind, {}).get((namespace, name), ()))

    def _deleted(self, kind: Kind, where: tuple[str, str]) -> str | None:
        """The version ``kind`` ``where`` was deleted at, if that is recent."""
        if not self._tombstones:
            return None  # the common case, without reading the clock
        self._forget_tombstones(self._clock())
        found = self._tombstones.get((kind, *where))
        return found[0] if found is not None else None

    def _forget_tombstones(self, now: float) -> None:
        tombstones = self._tombstones
        while tombstones:
            oldest = next(iter(tombstones))
            if tombstones[oldest][1] > now and len(tombstones) <= self._max_tombstones:
                return
            del tombstones[oldest]

    def tombstones(self) -> int:
        """How many deletions the store remembers (for tests and memory checks)."""
        return len(self._tombstones)

    def _codec(self, kind: Kind) -> _Codec:
        codec = self._codecs.get(kind)
        if codec is None:
            codec = self._codecs[kind] = _Codec()
        return codec

    def get(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        encoded = self._objects.get(kind, {}).get((namespace, name))
        return self._codec(kind).decode(encoded) if encoded is not None else None

    def all(self, kind: Kind) -> Iterator[JSON]:
        for encoded in list(self._objects.get(kind, {}).values()):
            yield self._codec(kind).decode(encoded)

    def keys(self, kind: Kind) -> list[tuple[str, str]]:
        """The namespace and name of every stored object of ``kind``, none decoded."""
        return list(self._objects.get(kind, {}))

    def names(self, kind: Kind, *, namespace: str) -> list[str]:
        """The names of the stored objects of ``kind`` in ``namespace``, none decoded."""
        return [name for where, name in self._objects.get(kind, {}) if where == namespace]

    def count(self, kind: Kind) -> int:
        return len(self._objects.get(kind, {}))
