"""Scenario: a steady mixed load is served through each disruption, one at a time, and recovers.

The load (scenario.py): HTTP Trigger requests and Invoke API RequestResponse calls, 2 a second
each, Event invocations (2 a second, boto3 with its retries), bucket uploads to MinIO (1 a
second) and messages to a JetStream stream on the release's NATS and to a Kafka topic (2 a
second each, polled by a queue and a kafka Trigger), all to one Function. The disruptions
(faults.py): a gateway pod (one of two), the dispatcher, the operator, the function's pod, the
broker (NATS), kube-apiserver and etcd. Each test is one disruption's window (window.py) and
prints one line of the table. In each: every synchronous failure is a 5xx with Retry-After or
an answer at the function's deadline, none hangs; no accepted event or upload and no stored
message is lost once the window's items have drained (duplicates are allowed: delivery is at
least once, and counted); the load is served normally again within RECOVERY_BOUND.

It replaces the release's pods, so it runs with the other disrupting scenarios, last
(tests/e2e/conftest.py); the gateway is back at one replica when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.chaos.faults import FAULTS
from e2e.chaos.load import Load, Pace
from e2e.chaos.scenario import NAME, chaos_load
from e2e.chaos.window import ACK_WAIT, Fault, Windows
from e2e.kit import Installed
from harness.cluster import Cluster

pytestmark = pytest.mark.disrupts_release

# The slowest expected recovery: a force-deleted dispatcher's events in flight come back after
# its ack wait (20 s); a replaced pod is scheduled, started and Ready in about 10-15 s on this
# loaded two-core node (30 s allowed); NATS clients reconnect every 2 s and readiness probes run
# every 2-5 s (10 s allowed).
RECOVERY_BOUND = ACK_WAIT + 30.0 + 10.0


@pytest.fixture(scope="module")
def load(
    e2e_cluster: Cluster, installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Load]:
    workdir = tmp_path_factory.mktemp("chaos")
    with chaos_load(e2e_cluster, installed, workdir=workdir, pace=Pace()) as running:
        yield running


@pytest.fixture(scope="module")
def windows(load: Load) -> Windows:
    return Windows(load)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.what.split()[0] for f in FAULTS])
def test_the_load_is_served_through_the_fault(
    fault: Fault,
    e2e_cluster: Cluster,
    windows: Windows,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = windows.measure(fault, e2e_cluster, NAME, bound=RECOVERY_BOUND)
    with capsys.disabled():
        print(f"\n{report.line()}")
        for example in report.examples:
            print(f"  {example}")
    outcomes = report.outcomes
    assert outcomes["hung"] == 0, report.examples
    answered_badly = outcomes["refused"] + outcomes["other"]
    assert answered_badly == 0, f"not a 5xx with Retry-After nor a deadline: {report.examples}"
    assert not report.lost, f"{len(report.lost)} accepted, never handled: {report.lost[:5]}"
    assert sorted(report.messages) == ["kafka", "queue"], "the load drives both pull sources"
    for source, tally in report.messages.items():
        assert tally.accepted > 0, f"no {source} message was stored in the window"
        assert not tally.lost, (
            f"{len(tally.lost)} {source} messages never handled: {tally.lost[:5]}"
        )
        assert report.not_published[source] == 0, f"the {source} producer gave up on messages"
    assert report.recovered_in is not None, f"not served normally {RECOVERY_BOUND:.0f} s after"
    assert report.not_accepted == 0, "the caller gave up on events (never accepted)"
