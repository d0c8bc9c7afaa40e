"""Local mode relays what functions print, whatever they print."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import yaml

from support.manifests import inline_function
from support.waiting import free_port, wait_for

LOUD = """
def handler(event, context):
    print("x" * event["size"])
    print("after the long line")
    return "ok"
"""


def test_a_line_over_64_kib_is_cut_and_the_function_keeps_answering(local_mode):
    local = local_mode(yaml.safe_dump(inline_function("loud", LOUD)))
    for size in (200_000, 10):
        answer = local.client.post(
            "/2015-03-31/functions/loud/invocations", content=json.dumps({"size": size})
        )
        assert answer.status_code == 200, local.output()
        assert answer.json() == "ok"
    cut = local.wait_for_line("[line cut: over 64 KiB]")
    assert len(cut) < 70_000
    local.wait_for_line("after the long line")
    local.wait_for_line("x" * 10)


NOISY = """
def handler(event, context):
    for _ in range(40):
        print("y" * 50_000)
    return "printed"
"""
QUIET = "def handler(event, context):\n    return 'quiet'\n"


def test_a_reader_that_stops_reading_stalls_no_function(tmp_path):
    manifest = tmp_path / "fns.yaml"
    manifest.write_text(
        yaml.safe_dump_all([inline_function("noisy", NOISY), inline_function("quiet", QUIET)])
    )
    port, admin = free_port(), free_port()
    local = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "local",
            str(manifest),
            "--port",
            str(port),
            "--admin-port",
            str(admin),
        ],
        stdout=subprocess.PIPE,  # never read: a terminal scrolled back, a full pipe
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_for(
                lambda: (
                    httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=1).status_code == 200
                ),
                timeout=30,
                what="local mode to serve",
            )
            invoke = "/2015-03-31/functions/{}/invocations"
            for _ in range(3):  # 6 MB of output, nobody reading it
                assert client.post(invoke.format("noisy"), content=b"{}").json() == "printed"
            assert client.post(invoke.format("quiet"), content=b"{}").json() == "quiet"
            assert httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=5).status_code == 200
    finally:
        local.send_signal(signal.SIGINT)
        try:
            local.wait(20)
        except subprocess.TimeoutExpired:
            local.kill()
            local.wait()
