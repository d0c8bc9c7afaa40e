"""`kubelambda gateway --nats URL`, the cluster's gateway (a real API server, a real nats-server):
an Event invocation it answers 202 is a message in the JetStream stream, for `kubelambda
dispatcher` to deliver, not an event in the gateway's memory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import nats
import nats.js.errors
import pytest

from harness.apiserver import ApiServer, api_server_for_pytest
from harness.nats import NatsFactory
from kubelambda.delivery.codec import decode_job
from support.waiting import free_port, wait_for

CRDS = Path(__file__).resolve().parents[3] / "crds"
STREAM = "KUBELAMBDA_EVENTS"  # BrokerSettings' default
FUNCTION = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "worker", "namespace": "default"},
    "spec": {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return e\n"}}},
    },
}


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    yield from api_server_for_pytest(tmp_path_factory)


@pytest.fixture
def gateway(
    kube_api: ApiServer, nats_factory: NatsFactory, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """The gateway command against the API server, given a NATS of the test's own: the
    gateway's public URL and the broker's."""
    kube_api.kubectl("apply", "--server-side", "-f", str(CRDS))
    kube_api.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/functions.kubelambda.dev"
    )
    kube_api.kubectl("apply", "-f", "-", input=json.dumps(FUNCTION))
    broker = nats_factory()
    port, admin_port = free_port(), free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubelambda.cli",
                "gateway",
                f"--kubeconfig={kube_api.kubeconfig}",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--admin-port={admin_port}",
                "--invoke-auth=none",
                "--autoscaler-url=http://127.0.0.1:9",  # no wake-ups: nothing runs here
                f"--nats={broker.url}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=kube_api.env(),
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the gateway exited {process.returncode}:\n{log.read_text()}")
            try:
                return httpx.get(f"http://127.0.0.1:{admin_port}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, what="the gateway's /healthz")
        yield f"http://127.0.0.1:{port}", broker.url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def stream_messages(url: str) -> list[bytes]:
    """The messages of the stream the gateway writes to (none if it never made it)."""
    client = await nats.connect(url)
    try:
        js = client.jetstream(timeout=5)
        try:
            state = (await js.stream_info(STREAM)).state
        except nats.js.errors.NotFoundError:
            return []
        return [
            (await js.get_msg(STREAM, seq=seq)).data or b""
            for seq in range(state.first_seq, state.last_seq + 1)
        ][: state.messages]
    finally:
        await client.close()


def test_an_accepted_event_is_kept_in_jetstream(gateway: tuple[str, str]) -> None:
    url, broker = gateway

    def accepted() -> str | None:
        answer = httpx.post(
            f"{url}/2015-03-31/functions/worker/invocations",
            headers={"X-Amz-Invocation-Type": "Event"},
            content=b'{"n": 1}',
            timeout=10,
        )
        # 404 until the gateway has seen the Function, 503 until it reached the broker.
        return answer.headers["x-amzn-requestid"] if answer.status_code == 202 else None

    request_id = wait_for(accepted, timeout=60, what="an Event invocation answered 202")
    kept = [decode_job(data)[0] for data in anyio.run(stream_messages, broker)]
    assert [(job.id, job.payload) for job in kept] == [(request_id, b'{"n": 1}')]
