"""`kubelambda invoke` against a real `kubelambda local`: a result, a function error, an Event,
the log tail, the payload from a file or stdin, and the gateway found through KUBELAMBDA_URL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.local import LocalMode, start_local
from support.manifests import inline_function
from support.waiting import free_port

ECHO = """
def handler(event, context):
    print("echoing", context.aws_request_id)
    return {"got": event}
"""
BOOM = """
def handler(event, context):
    raise ValueError("no " + event.get("what", "thing"))
"""
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    manifest = tmp_path_factory.mktemp("invoke") / "functions.yaml"
    manifest.write_text(
        yaml.safe_dump_all([inline_function("echo", ECHO), inline_function("boom", BOOM)])
    )
    served = start_local(manifest)
    yield served
    served.stop()


def invoke(
    *args: str, url: str | None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBELAMBDA_URL"))}
    if url is not None:
        env["KUBELAMBDA_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", "invoke", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_result_is_printed_on_stdout(local: LocalMode) -> None:
    done = invoke("echo", "--payload", '{"name": "you"}', url=local.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"got": {"name": "you"}}
    assert done.stderr == ""


def test_the_url_flag_wins_over_the_environment(local: LocalMode) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}"
    done = invoke("echo", "--url", local.url, url=nothing_there)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"got": {}}


def test_a_function_error_prints_the_error_and_exits_1(local: LocalMode) -> None:
    done = invoke("boom", "--payload", '{"what": "luck"}', url=local.url)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "no luck")
    assert done.stderr == "kubelambda invoke: boom failed (Unhandled): ValueError: no luck\n"


def test_an_event_prints_its_request_id_and_runs(local: LocalMode) -> None:
    done = invoke("echo", "--async", "--payload", '{"later": true}', url=local.url)
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.strip()
    assert UUID.match(request_id), done.stdout
    local.wait_for_line(f"echoing {request_id}")


def test_the_log_tail_goes_to_stderr(local: LocalMode) -> None:
    done = invoke("echo", "--log-type", "Tail", url=local.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"got": {}}
    lines = done.stderr.splitlines()
    assert lines[0].startswith("START RequestId: ")
    assert lines[1].startswith("echoing ")  # printed lines are unprefixed, as on Lambda
    assert any(line.startswith("REPORT RequestId: ") for line in lines)


def test_the_payload_comes_from_a_file_or_stdin(local: LocalMode, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    done = invoke("echo", "--payload", f"@{event}", url=local.url)
    assert json.loads(done.stdout) == {"got": {"from": "file"}}, done.stderr
    done = invoke("echo", "--payload", "@-", url=local.url, stdin='{"from": "stdin"}')
    assert json.loads(done.stdout) == {"got": {"from": "stdin"}}, done.stderr


def test_a_namespace_is_part_of_the_name(local: LocalMode) -> None:
    done = invoke("echo", "-n", "default", url=local.url)
    assert done.returncode == 0, done.stderr
    done = invoke("echo", "-n", "elsewhere", url=local.url)
    assert done.returncode == 1
    assert done.stderr == (
        "kubelambda invoke: elsewhere.echo: ResourceNotFoundException: Function not found:"
        " elsewhere/echo\n"
    )


def test_no_gateway_there_says_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = invoke("echo", url=url)
    assert done.returncode == 1
    assert done.stderr.startswith(f"kubelambda invoke: echo: cannot reach a gateway at {url}")
