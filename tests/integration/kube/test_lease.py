"""platforms/kubernetes/lease.py on a real API server: one holder at a time, and a holder that
gives the Lease up hands it to the next candidate at once, not after it expires."""

from __future__ import annotations

import uuid

from harness.apiserver import ApiServer
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.kinds import LEASE
from kubelambda.platforms.kubernetes.lease import LeaseElector


def test_a_released_lease_goes_to_the_next_candidate_at_once(kube_api: ApiServer) -> None:
    client = KubeClient.from_config(kube_api.kubeconfig)
    name = f"lease-{uuid.uuid4().hex[:8]}"
    old, new = (
        LeaseElector(client, namespace="default", name=name, identity=who, duration_seconds=600)
        for who in ("old-pod", "new-pod")
    )
    assert old.try_hold() is True
    assert new.try_hold() is False  # held, and 600 s from expiring

    new.release()  # not its to give: nothing changes
    assert old.try_hold() is True and new.try_hold() is False

    old.release()
    assert new.try_hold() is True
    assert old.try_hold() is False
    lease = client.get(LEASE, namespace="default", name=name)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "new-pod"
    assert lease["spec"]["leaseTransitions"] == 1
