"""Leadership through a coordination.k8s.io Lease, so exactly one autoscaler acts at a time.

The autoscaler service calls ``try_hold`` every few seconds from a worker thread: it takes
the Lease when it is free or expired, renews it while held, and reports whether this
process is the leader; ``release`` gives it up as the process stops. Writes carry the Lease's
resourceVersion, so two candidates racing for it cannot both win.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.errors import ApiError, Conflict
from kubelambda.platforms.kubernetes.kinds import LEASE

__all__ = ["LeaseElector"]

logger = logging.getLogger(__name__)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class LeaseElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int = 15,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_seconds = duration_seconds

    def _spec(self, now: datetime, *, acquired: bool, transitions: int) -> JSON:
        spec: JSON = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_seconds,
            "renewTime": _stamp(now),
            "leaseTransitions": transitions,
        }
        if acquired:
            spec["acquireTime"] = _stamp(now)
        return spec

    def try_hold(self, now: datetime | None = None) -> bool:
        """Take or renew the Lease; True while this identity holds it."""
        now = now or datetime.now(UTC)
        try:
            lease = self.client.get(LEASE, namespace=self.namespace, name=self.name)
            if lease is None:
                self.client.create(
                    {
                        "apiVersion": LEASE.api_version,
                        "kind": LEASE.kind,
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(now, acquired=True, transitions=0),
                    }
                )
                logger.info("took the lease %s/%s", self.namespace, self.name)
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = _parse(spec.get("renewTime"))
            duration = int(spec.get("leaseDurationSeconds") or self.duration_seconds)
            expired = renewed is None or now - renewed > timedelta(seconds=duration)
            if holder != self.identity and not expired:
                return False
            taking = holder != self.identity
            transitions = int(spec.get("leaseTransitions") or 0) + (1 if taking else 0)
            self._write(lease, self._spec(now, acquired=taking, transitions=transitions))
            if taking:
                logger.info("took the lease %s/%s from %s", self.namespace, self.name, holder)
            return True
        except Conflict:
            return False
        except ApiError as exc:
            logger.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def release(self) -> None:
        """Give the Lease up if this identity holds it, so the next candidate takes it at its
        next try rather than once it expires: a rolling update's new operator waited up to
        ``duration_seconds`` (15 s), with no autoscaler and announcements answered 503.
        Conditional on the Lease's version, as taking it is; never raises."""
        try:
            lease = self.client.get(LEASE, namespace=self.namespace, name=self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            # No holder and no renewal: free, as an expired Lease is (try_hold).
            self._write(lease, {"holderIdentity": None, "renewTime": None})
            logger.info("gave up the lease %s/%s", self.namespace, self.name)
        except ApiError as exc:  # a Conflict too: someone else holds it now
            logger.warning("lease %s/%s not given up: %s", self.namespace, self.name, exc)

    def _write(self, lease: JSON, spec: JSON) -> None:
        """Merge ``spec`` into ``lease``. Its resourceVersion makes the write conditional: if
        another candidate wrote first, this one fails with 409 instead of overwriting it."""
        self.client.merge_patch(
            LEASE,
            namespace=self.namespace,
            name=self.name,
            patch={
                "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": spec,
            },
        )
