"""At least once, nothing lost: local mode (the gateway) is stopped and started again, with the
same --state-dir, during a stream of uploads — or killed with everything it started, its events
kept in NATS JetStream. MinIO's queue directory holds the events sent while it is down; the
state directory or the broker holds those it had acknowledged but not delivered. Every uploaded
key ends up handled or dead-lettered; duplicates are counted, not lost."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.nats import nats_server
from integration.s3.events import (
    TOKEN,
    Setup,
    bucket,
    bucket_trigger,
    keys_under,
    wait_for_keys,
    write_manifests,
)
from support.local import LocalMode
from support.manifests import inline_function
from support.processes import kill_tree
from support.waiting import wait_for

UPLOADS = 60
UPLOADS_PER_SECOND = 10
POISON_EVERY = 7  # these keys always fail and end in the dead letter

# 0.1 s of work at one instance: slower than the uploads, so a backlog waits in the
# gateway's delivery store when it stops.
TALLY = textwrap.dedent(
    """\
    import os, time, urllib.parse
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])

    def handler(event, context):
        record = event["Records"][0]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        if "poison" in key:
            raise ValueError("cannot take " + key)
        time.sleep(0.1)
        s3.put_object(
            Bucket=record["s3"]["bucket"]["name"],
            Key="handled/" + key + "/" + context.aws_request_id,
            Body=b"",
        )
    """
)

FAILURES = textwrap.dedent(
    """\
    import os, urllib.parse
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])

    def handler(event, context):
        record = event["requestPayload"]["Records"][0]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        s3.put_object(
            Bucket=record["s3"]["bucket"]["name"],
            Key="dead/" + key + "/" + event["requestContext"]["requestId"],
            Body=b"",
        )
    """
)


def function(setup: Setup, name: str, source: str) -> dict[str, Any]:
    return inline_function(
        name,
        source,
        timeoutSeconds=30,
        scaling={"maxReplicas": 1},
        env=[{"name": "S3_ENDPOINT_URL", "value": setup.minio.endpoint}],
    )


class Uploader(threading.Thread):
    """Puts in/NNNN objects at a steady rate; `uploaded` holds the keys MinIO accepted."""

    def __init__(self, setup: Setup, bucket_name: str) -> None:
        super().__init__(daemon=True)
        self.s3 = setup.minio.client()
        self.bucket = bucket_name
        self.uploaded: list[str] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for index in range(UPLOADS):
                poison = "-poison" if index % POISON_EVERY == POISON_EVERY - 1 else ""
                key = f"in/{index:04d}{poison}"
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"x")
                self.uploaded.append(key)
                # Pacing the load, not waiting for a result.
                if self.stopping.wait(1 / UPLOADS_PER_SECOND):
                    return
        except BaseException as exc:
            self.error = exc


def keys_of(objects: list[str], prefix: str) -> list[str]:
    """`<prefix><key>/<request id>` → key, once per object (duplicates kept)."""
    return [name.removeprefix(prefix).rsplit("/", 1)[0] for name in objects]


def tally(setup: Setup, tmp_path: Path, label: str, *, trigger: str) -> tuple[str, Path]:
    """A bucket and the manifests of `tally` (retried once, then its dead letter) on it."""
    name = bucket(setup, label)
    made = bucket_trigger(setup, trigger, "tally", bucket=name, prefix="in/")
    made["spec"]["delivery"] = {
        "retries": 1,
        "backoffSeconds": 1,
        "deadLetter": {"function": "tally-failures"},
    }
    manifest = write_manifests(
        tmp_path / f"{label}.yaml",
        [function(setup, "tally", TALLY), function(setup, "tally-failures", FAILURES), made],
    )
    return name, manifest


def all_handled_or_dead(setup: Setup, name: str, uploaded: set[str]) -> int:
    """Wait until every upload is handled (or, poisoned, dead-lettered), each by its kind;
    the number of duplicate deliveries."""
    assert len(uploaded) == UPLOADS

    def settled() -> tuple[list[str], list[str]] | None:
        handled = keys_of(keys_under(setup, name, "handled/"), "handled/")
        dead = keys_of(keys_under(setup, name, "dead/"), "dead/")
        return (handled, dead) if set(handled) | set(dead) >= uploaded else None

    try:
        handled, dead = wait_for(settled, timeout=120, interval=0.2, what="every upload handled")
    except TimeoutError:
        seen = keys_of(keys_under(setup, name, "handled/"), "handled/")
        seen += keys_of(keys_under(setup, name, "dead/"), "dead/")
        missing = sorted(uploaded - set(seen))
        raise AssertionError(f"{len(missing)} uploads never handled: {missing}") from None
    poison = {key for key in uploaded if key.endswith("-poison")}
    assert set(handled) == uploaded - poison
    assert set(dead) == poison
    return len(handled) + len(dead) - len(uploaded)


def test_stop_and_restart_during_uploads_loses_nothing(
    setup: Setup, local_at: Callable[..., LocalMode], tmp_path: Path
) -> None:
    name, manifest = tally(setup, tmp_path, "stream", trigger="tally-bucket")
    state = tmp_path / "state"
    options = ("--state-dir", str(state), "--s3-token", TOKEN, "--verbose")
    first = local_at(manifest, *options)
    uploader = Uploader(setup, name)
    uploader.start()
    try:
        # Mid-stream: some events handled, more arriving.
        wait_for_keys(setup, name, "handled/", 3, timeout=60)
        first.stop()
        assert first.process.returncode == 0, first.output()
        # --state-dir: the subscription stays, so MinIO queues what comes meanwhile.
        queues = setup.minio.client().get_bucket_notification_configuration(Bucket=name)
        assert len(queues["QueueConfigurations"]) == 1
        backlog = list(state.glob("deliveries/*.job"))
        down_at = len(uploader.uploaded)
        wait_for(
            lambda: len(uploader.uploaded) >= down_at + 10 or not uploader.is_alive(),
            timeout=30,
            what="uploads while local mode is down",
        )
        second = local_at(manifest, *options)
    finally:
        uploader.join(timeout=60)
    assert uploader.error is None, uploader.error
    duplicates = all_handled_or_dead(setup, name, set(uploader.uploaded))
    print(
        f"uploaded {UPLOADS}: {duplicates} duplicate deliveries; {len(backlog)} events were"
        f" waiting in the state directory at the stop"
    )
    if backlog:
        second.wait_for_line("resuming", timeout=5)
    # Delivered events leave no file behind.
    wait_for(
        lambda: not list(state.glob("deliveries/*.job")),
        timeout=30,
        what="the state directory to empty",
    )


def test_a_gateway_killed_during_uploads_loses_nothing_with_the_broker(
    setup: Setup, local_at: Callable[..., LocalMode], tmp_path: Path
) -> None:
    """As a node failure: local mode, its dispatcher and its instances SIGKILLed mid-stream.
    What it acknowledged is in JetStream; what MinIO sent meanwhile is in MinIO's queue."""
    name, manifest = tally(setup, tmp_path, "killed", trigger="tally-killed")
    with nats_server(store_dir=tmp_path / "jetstream", log_dir=tmp_path) as broker:
        options = (
            "--nats",
            broker.url,
            "--nats-ack-wait",
            "5",
            # keeps the bucket's subscription in place across the kill and the restart
            "--state-dir",
            str(tmp_path / "state"),
            "--s3-token",
            TOKEN,
        )
        first = local_at(manifest, *options)
        uploader = Uploader(setup, name)
        uploader.start()
        try:
            wait_for_keys(setup, name, "handled/", 3, timeout=60)
            kill_tree(first.process.pid)
            first.process.wait(10)
            down_at = len(uploader.uploaded)
            wait_for(
                lambda: len(uploader.uploaded) >= down_at + 10 or not uploader.is_alive(),
                timeout=30,
                what="uploads while local mode is down",
            )
            local_at(manifest, *options)
        finally:
            uploader.join(timeout=60)
        assert uploader.error is None, uploader.error
        duplicates = all_handled_or_dead(setup, name, set(uploader.uploaded))
    print(f"uploaded {UPLOADS} across a kill -9: lost 0, {duplicates} duplicate deliveries")
