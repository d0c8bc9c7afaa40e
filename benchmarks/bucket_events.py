"""Benchmark: bucket events handled end to end per second, against the gateway's Invoke API.

A real MinIO (built by the test harness) notifies `kubelambda local`'s gateway through its
webhook target (bearer token; with a queue_dir unless --no-queue-dir), and the gateway keeps
accepted events in --state-dir (fsync before it acknowledges) unless --memory. THREADS
threads upload objects with boto3 for SECONDS; a no-op function prints one line per event.
Bucket rate = uploads / (last one handled - first upload started). In the same run the same
threads call the Invoke API (RequestResponse, boto3's lambda client) on the same function
for SECONDS: ratio = bucket rate / invoke rate. Rounds alternate the two, so background
load on the machine hits both alike; each round prints its own ratio.

    python benchmarks/bucket_events.py [--seconds 10] [--threads 4] [--rounds 2]
                                       [--no-queue-dir] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.minio import Minio, Webhook, minio_server
from support.local import LocalMode, lambda_client, start_local
from support.waiting import free_port, wait_for

TOKEN = "bucket-events-benchmark"
BUCKET = "bench"
MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: noop}}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {{maxReplicas: 4}}
  code:
    inline:
      files:
        app.py: |
          def handler(event, context):
              records = event.get("Records")
              print("handled", records[0]["s3"]["object"]["key"] if records else event["key"])
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: noop-bucket}}
spec:
  function: noop
  bucket:
    bucket: {bucket}
    source:
      endpoint: {endpoint}
      credentialsSecret: {{name: unused-locally}}
"""


def handled(local: LocalMode, prefix: str) -> tuple[dict[str, float], int]:
    """When each key under `prefix` was first handled (from the function's 'handled <key>'
    lines in local mode's output), and how many lines there were (duplicates included)."""
    marker = f"handled {prefix}"
    first: dict[str, float] = {}
    lines = 0
    for line, at in zip(list(local.lines), list(local.arrivals), strict=False):
        if marker in line:
            lines += 1
            first.setdefault(line.rsplit(" ", 1)[-1], at)
    return first, lines


def run_threads(threads: int, seconds: float, work: Callable[[int, int], None]) -> int:
    """Call work(thread, n) in `threads` threads until `seconds` pass; the calls made."""
    deadline = time.monotonic() + seconds
    counts = [0] * threads
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            while time.monotonic() < deadline:
                work(index, counts[index])
                counts[index] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(counts)


def bucket_round(
    local: LocalMode, minio: Minio, *, threads: int, seconds: float, tag: str
) -> dict[str, float]:
    clients = [minio.client() for _ in range(threads)]
    prefix = f"{tag}/"

    def upload(index: int, n: int) -> None:
        clients[index].put_object(Bucket=BUCKET, Key=f"{prefix}{index}-{n}", Body=b"x")

    started = time.monotonic()
    uploads = run_threads(threads, seconds, upload)
    uploaded = time.monotonic() - started

    def all_handled() -> tuple[dict[str, float], int] | None:
        first, lines = handled(local, prefix)
        return (first, lines) if len(first) >= uploads else None

    first, lines = wait_for(
        all_handled, timeout=300, interval=0.05, what=f"{uploads} uploads handled"
    )
    elapsed = max(first.values()) - started
    return {
        "uploads": uploads,
        "upload_rate": uploads / uploaded,
        "handled_rate": uploads / elapsed,
        "drain": elapsed - uploaded,
        "duplicates": lines - len(first),
    }


def invoke_round(local: LocalMode, *, threads: int, seconds: float, tag: str) -> dict[str, float]:
    clients = [lambda_client(local.url) for _ in range(threads)]

    def invoke(index: int, n: int) -> None:
        payload = json.dumps({"key": f"{tag}/{index}-{n}"})
        answer = clients[index].invoke(FunctionName="noop", Payload=payload)
        if answer["StatusCode"] != 200 or "FunctionError" in answer:
            raise RuntimeError(f"invoke failed: {answer}")

    started = time.monotonic()
    calls = run_threads(threads, seconds, invoke)
    return {"calls": calls, "rate": calls / (time.monotonic() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-queue-dir", action="store_true", help="MinIO without queue_dir")
    parser.add_argument("--memory", action="store_true", help="gateway without --state-dir")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    port = free_port()
    hook = Webhook(
        endpoint=f"http://127.0.0.1:{port}/_kubelambda/events/s3",
        auth_token=TOKEN,
        queue_dir=None if args.no_queue_dir else work / "minio-queue",
    )
    with minio_server(webhooks={"KUBELAMBDA": hook}, log_dir=work) as minio:
        minio.client().create_bucket(Bucket=BUCKET)
        manifest = work / "noop.yaml"
        manifest.write_text(MANIFEST.format(bucket=BUCKET, endpoint=minio.endpoint))
        # local mode subscribes the bucket with these (it cannot read Secrets)
        os.environ["AWS_ACCESS_KEY_ID"] = minio.access_key
        os.environ["AWS_SECRET_ACCESS_KEY"] = minio.secret_key
        options = ["--s3-token", TOKEN, "--port", str(port)]
        if not args.memory:
            options += ["--state-dir", str(work / "state")]
        local = start_local(manifest, *options)
        local.url = f"http://127.0.0.1:{port}"
        try:
            # Warm: the function's first instance is up before either path is timed.
            bucket_round(local, minio, threads=1, seconds=0.1, tag="warm-bucket")
            invoke_round(local, threads=1, seconds=0.1, tag="warm-invoke")
            setup = (
                f"MinIO queue_dir: {'no' if args.no_queue_dir else 'yes'}; gateway store: "
                f"{'memory' if args.memory else 'files, fsync before the answer'}; "
                f"{args.threads} threads, {args.seconds:.0f} s per phase"
            )
            print(setup)
            ratios = []
            for index in range(args.rounds):
                invoke = invoke_round(
                    local, threads=args.threads, seconds=args.seconds, tag=f"invoke{index}"
                )
                bucket = bucket_round(
                    local, minio, threads=args.threads, seconds=args.seconds, tag=f"bucket{index}"
                )
                ratio = bucket["handled_rate"] / invoke["rate"]
                ratios.append(ratio)
                report(index, invoke, bucket, ratio)
            print(
                f"bucket events / Invoke API (RequestResponse): median ratio "
                f"{statistics.median(ratios):.2f}"
            )
        finally:
            local.stop()


def report(index: int, invoke: dict[str, Any], bucket: dict[str, Any], ratio: float) -> None:
    print(
        f"round {index + 1}: Invoke API {invoke['rate']:.0f}/s ({invoke['calls']} calls) | "
        f"bucket: {bucket['uploads']} uploads at {bucket['upload_rate']:.0f}/s, handled "
        f"{bucket['handled_rate']:.0f}/s end to end (last handled {bucket['drain']:.1f} s "
        f"after the last upload; {bucket['duplicates']} duplicates) | "
        f"ratio {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
