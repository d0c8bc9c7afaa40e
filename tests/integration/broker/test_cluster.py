"""Asynchronous events on a three-server JetStream cluster, through `kubelambda local --nats
<all three URLs> --nats-replicas 3`: the stream is kept on three servers, and SIGKILLing the one
that leads it while Event invocations flow loses none answered 202 (the gateway answers 503
while JetStream elects another leader); the killed server, back, catches up. The test prints
its figures (accepted, handled, lost, duplicates, answers by status): run it with -s to see them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import nats
from botocore.config import Config
from botocore.exceptions import ClientError
from nats.js.api import StreamInfo

from harness.nats import NatsCluster, NatsServer
from support.local import start_local
from support.waiting import wait_for

STREAM = "KUBELAMBDA_EVENTS"  # BrokerSettings' default

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: worker}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 4
  scaling: {{maxReplicas: 1}}
  timeoutSeconds: 30
  env: [{{name: HANDLED, value: "{handled}"}}]
  code:
    inline:
      files:
        app.py: |
          import os, uuid
          def handler(event, context):
              # One file per delivery, so that a delivery made twice is counted twice.
              name = f"{{context.aws_request_id}}.{{uuid.uuid4().hex}}"
              open(os.path.join(os.environ["HANDLED"], name), "w").close()
"""


class Flow:
    """Event invocations sent by threads until `stop` is set: the ids answered 202 (when), and
    every HTTP answer's status, each of boto3's own retries of a 503 included."""

    def __init__(self, url: str) -> None:
        # boto3 as a caller would configure it: it retries a 503 itself, with a backoff.
        self.client = boto3.client(
            "lambda",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 10}, read_timeout=30),
        )
        self.client.meta.events.register("response-received.lambda.Invoke", self._answered)
        self.lock = threading.Lock()
        self.accepted: dict[str, float] = {}  # request id → time.monotonic() of its 202
        self.answers: list[tuple[float, int | None]] = []  # (when, status); None: no answer
        self.refused = 0  # still refused after boto3's retries: never accepted, so not owed
        self.stop = threading.Event()

    def _answered(self, response_dict: dict[str, Any] | None, **_: Any) -> None:
        status = None if response_dict is None else int(response_dict["status_code"])
        with self.lock:
            self.answers.append((time.monotonic(), status))

    def send_until_stopped(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                answer = self.client.invoke(
                    FunctionName="worker", InvocationType="Event", Payload=json.dumps({"n": n})
                )
            except ClientError as refused:
                with self.lock:
                    self.refused += 1
                # As a caller would once boto3 gives up (its retry quota spent, say): wait as
                # long as the gateway's Retry-After asks (at most 2 s here), then go on.
                headers = refused.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                self.stop.wait(min(2.0, float(headers.get("retry-after", 1))))
                continue
            if answer["StatusCode"] != 202:
                raise AssertionError(f"an Event invocation answered {answer['StatusCode']}")
            with self.lock:
                self.accepted[answer["ResponseMetadata"]["RequestId"]] = time.monotonic()

    def accepted_since(self, moment: float) -> int:
        with self.lock:
            return sum(when >= moment for when in self.accepted.values())

    def statuses(self, *, since: float = 0.0, until: float = float("inf")) -> dict[int | None, int]:
        """How many answers of each status came between `since` and `until`."""
        with self.lock:
            return dict(collections.Counter(s for when, s in self.answers if since <= when < until))

    def longest_without_202(self, *, since: float) -> float:
        """The longest time from `since` on in which no event was accepted (the outage as
        clients saw it, boto3's backoff between its retries included)."""
        with self.lock:
            times = sorted(when for when in self.accepted.values() if when >= since)
        edges = [since, *times]
        return max(later - earlier for earlier, later in itertools.pairwise(edges))


def deliveries(handled: Path) -> collections.Counter[str]:
    """How many times each request id was delivered, from the handler's files."""
    return collections.Counter(path.name.rpartition(".")[0] for path in handled.iterdir())


def stream_info(cluster: NatsCluster) -> StreamInfo:
    """The stream's info, asked through a fresh connection to the running members."""

    async def ask() -> StreamInfo:
        urls = [server.url for server in cluster.running()]
        client = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await client.jetstream(timeout=5).stream_info(STREAM)
        finally:
            await client.close()

    return asyncio.run(ask())


def emptied(cluster: NatsCluster) -> StreamInfo | None:
    """The stream's info once it holds no message (each one delivered and acknowledged)."""
    info = stream_info(cluster)
    return info if info.state.messages == 0 else None


def last_sequence_seen_by(server: NatsServer) -> int:
    """The stream's last sequence in `server`'s own copy (its monitoring endpoint)."""
    _, jsz = server.monitor("/jsz?accounts=true&streams=true")
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == STREAM:
                return int(stream["state"]["last_seq"])
    raise LookupError(f"{server.name} holds no copy of {STREAM}")


def gateway_server(cluster: NatsCluster) -> str | None:
    """The member the gateway's connection (named kubelambda) is on, for the report."""
    for server in cluster.running():
        _, connz = server.monitor("/connz")
        if any(conn.get("name") == "kubelambda" for conn in connz.get("connections", [])):
            return server.name
    return None


def test_no_accepted_event_is_lost_when_the_streams_leader_is_killed(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    """With the stream on one server (--nats-replicas 1) the same kill leaves no server to take
    events nor to hand out those accepted, and this test fails; with three, the survivors elect
    a leader and go on, and a client's retries of the 503s in between get through."""
    handled = tmp_path / "handled"
    handled.mkdir()
    manifest = tmp_path / "functions.yaml"
    manifest.write_text(FUNCTION.format(handled=handled))
    # Acknowledgements the killed leader took with it come again after the ack wait: short here.
    local = start_local(
        manifest, "--nats", nats_cluster.urls, "--nats-replicas", "3", "--nats-ack-wait", "5"
    )
    flow = Flow(local.url)
    senders = [threading.Thread(target=flow.send_until_stopped, daemon=True) for _ in range(3)]
    try:

        def led() -> StreamInfo | None:
            """The stream once its three replicas elected a leader (a new stream's raft group
            lists all three as peers, none current, until then)."""
            info = stream_info(nats_cluster)
            cluster = info.cluster if info is not None else None
            if cluster is None or cluster.leader is None or len(cluster.replicas or []) != 2:
                return None
            return info

        created = wait_for(led, timeout=30, what=f"{STREAM} made by the gateway, with a leader")
        assert created.config.num_replicas == 3

        for sender in senders:
            sender.start()
        wait_for(lambda: len(deliveries(handled)) >= 20, timeout=30, what="the flow under way")
        before = stream_info(nats_cluster)
        assert before.cluster is not None and before.cluster.leader is not None
        leader = nats_cluster.member(before.cluster.leader)
        gateway_on = gateway_server(nats_cluster)
        accepted_before = len(flow.accepted)

        killed_at = time.monotonic()
        leader.kill()
        wait_for(
            lambda: flow.accepted_since(killed_at) >= 20,
            timeout=40,
            what=f"20 events accepted after {leader.name} (the stream's leader) was killed",
        )
        flow.stop.set()
        for sender in senders:
            sender.join(timeout=60)
        accepted = set(flow.accepted)
        stopped_at = time.monotonic()
        with contextlib.suppress(TimeoutError):  # the figures below say which are missing
            wait_for(
                lambda: accepted <= set(deliveries(handled)),
                timeout=60,
                what=f"all {len(accepted)} accepted events handled",
            )
        handled_at = time.monotonic()
        # Every message acknowledged and gone: a delivery to be made again has been made.
        after = wait_for(lambda: emptied(nats_cluster), timeout=30, what=f"{STREAM} emptied")
        emptied_at = time.monotonic()
    except BaseException:
        print(f"kubelambda local's output:\n{local.output()}")  # shown with the failure
        raise
    finally:
        flow.stop.set()
        local.stop()

    counts = deliveries(handled)
    refusals = [when - killed_at for when, status in flow.answers if status != 202]
    figures = {
        "killed": leader.name,
        "gateway_connected_to": gateway_on,
        "accepted": len(accepted),
        "accepted_before_kill": accepted_before,
        "handled": len(accepted & set(counts)),
        "lost": len(accepted - set(counts)),
        "duplicates": sum(count - 1 for count in counts.values()),
        "handled_never_answered_202": len(set(counts) - accepted),
        "answers_before_kill": flow.statuses(until=killed_at),
        "answers_after_kill": flow.statuses(since=killed_at),
        "refused_after_retries": flow.refused,
        "refusals_s_after_kill": (min(refusals), max(refusals)) if refusals else None,
        "longest_without_202_s": flow.longest_without_202(since=killed_at),
        "s_after_kill": {
            "senders_stopped": stopped_at - killed_at,
            "all_handled": handled_at - killed_at,
            "stream_empty": emptied_at - killed_at,
        },
    }
    print("cluster figures:", figures)  # shown with -s, or with a failure
    assert figures["lost"] == 0, f"accepted events lost: {figures}"
    # A 202 only once JetStream holds the event; otherwise 503, which boto3 retries.
    assert set(flow.statuses()) <= {202, 503}, figures
    assert after.config.num_replicas == 3
    assert after.cluster is not None and after.cluster.leader != leader.name
    peers = {peer.name for peer in after.cluster.replicas or []}
    assert peers | {after.cluster.leader} == set(nats_cluster.names())

    # Back on its ports and store, the killed server catches up with what it missed.
    nats_cluster.restart(leader)

    def caught_up() -> bool:
        info = stream_info(nats_cluster)
        assert info.cluster is not None
        peers = info.cluster.replicas or []
        return (
            {peer.name for peer in peers} | {info.cluster.leader} == set(nats_cluster.names())
            and all(peer.current and not peer.offline for peer in peers)
            and last_sequence_seen_by(leader) == info.state.last_seq
        )

    wait_for(caught_up, timeout=30, what=f"{leader.name} current again in {STREAM}")
