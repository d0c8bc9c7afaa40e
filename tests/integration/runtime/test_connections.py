"""How invocations reach a worker: a keep-alive connection handed to it (answered directly),
or a request sent to it in a frame (everything else), and the moves between the two."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import time

from support.runtime import INVOKE_PATH
from support.waiting import wait_for

APP = """
import os, time

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    print("working on", event)
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "event": event, "id": context.aws_request_id}
"""


def request(body: str, request_id: str, *, close: bool = False, tail: bool = False) -> bytes:
    headers = [
        f"POST {INVOKE_PATH} HTTP/1.1",
        "Host: runtime",
        "Content-Type: application/json",
        f"Content-Length: {len(body.encode())}",
        f"Lambda-Runtime-Aws-Request-Id: {request_id}",
    ]
    if close:
        headers.append("Connection: close")
    if tail:
        headers.append("X-Amz-Log-Type: Tail")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` answers from a socket: status, headers (lower-cased names), body."""
    data = b""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    sock.settimeout(30)
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            status_line, *lines = data[:head_end].decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            end = head_end + 4 + int(headers["content-length"])
            if len(data) >= end:
                answers.append((int(status_line.split()[1]), headers, data[head_end + 4 : end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the runtime closed the connection after {len(answers)} answers"
        data += chunk
    return answers


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def comparable(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], object]:
    """The answer without what differs between runs (durations in the log tail and the
    billed duration header)."""
    status, headers, body = answer
    kept = {k: v for k, v in headers.items() if k not in ("content-length", "connection")}
    # The billed duration is the run's own; whether it is there is what must agree.
    kept["billed"] = str(kept.pop("x-kubelambda-billed-duration-ms", "").isdigit())
    if "x-amz-log-result" in kept:
        tail = base64.b64decode(kept.pop("x-amz-log-result")).decode()
        kept["log lines"] = " ".join(line.split(":")[0] for line in tail.splitlines())
    return status, kept, json.loads(body)


def test_both_paths_give_the_same_answers(runtime):
    fn = runtime({"app.py": APP})
    events = ['{"n": 1}', '{"fail": true}', "{not json"]
    with connect(fn.url) as kept_alive:
        kept_alive.sendall(request('{"warm": 1}', "warm-up"))
        read_answers(kept_alive, 1)  # now the worker holds this connection
        direct = []
        for event in events:
            kept_alive.sendall(request(event, "same-id", tail=True))
            direct.extend(read_answers(kept_alive, 1))
    framed = []
    for event in events:
        with connect(fn.url) as one_shot:  # Connection: close is never handed over
            one_shot.sendall(request(event, "same-id", close=True, tail=True))
            framed.extend(read_answers(one_shot, 1))
    for left, right in zip(direct, framed, strict=True):
        assert comparable(left) == comparable(right)
    assert [status for status, _, _ in direct] == [200, 200, 400]
    assert direct[1][1]["x-amz-function-error"] == "Unhandled"
    assert "x-amz-log-result" in direct[0][1]


def test_a_held_connection_also_serves_the_other_endpoints(runtime):
    fn = runtime({"app.py": APP})
    host, port = fn.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    statuses = []
    for method, path, body in [
        ("POST", INVOKE_PATH, '{"n": 1}'),
        ("GET", "/healthz", None),
        ("POST", INVOKE_PATH, '{"n": 2}'),
        ("GET", "/metrics", None),
        ("GET", INVOKE_PATH, None),
        ("POST", "/elsewhere", "{}"),
        ("POST", INVOKE_PATH, '{"n": 3}'),
    ]:
        connection.request(method, path, body=body)
        answer = connection.getresponse()
        answer.read()
        statuses.append(answer.status)
        assert not answer.will_close
    connection.close()
    assert statuses == [200, 200, 200, 200, 405, 404, 200]


def test_pipelined_invocations_are_answered_in_order(runtime):
    fn = runtime({"app.py": APP})
    with connect(fn.url) as sock:
        sock.sendall(request("{}", "first"))
        read_answers(sock, 1)
        sock.sendall(b"".join(request(f'{{"n": {n}}}', f"p-{n}") for n in range(4)))
        answers = read_answers(sock, 4)
    assert [json.loads(body)["id"] for _, _, body in answers] == [f"p-{n}" for n in range(4)]


def test_one_environment_serves_connections_in_turn(runtime):
    fn = runtime({"app.py": APP})  # concurrency 1
    with connect(fn.url) as first, connect(fn.url) as second:
        pids = set()
        for n in range(6):
            sock = first if n % 2 == 0 else second
            sock.sendall(request(f'{{"n": {n}}}', f"turn-{n}"))
            ((status, _, body),) = read_answers(sock, 1)
            assert status == 200, body
            pids.add(json.loads(body)["pid"])
    assert len(pids) == 1  # one environment, handed from connection to connection


def test_an_idle_connection_gives_its_environment_up_before_a_busy_one(runtime):
    """More connections than environments (two gateways in front of one instance, or a
    proxy's idle keep-alive connections): a request on a connection no environment holds
    takes the environment whose connection was used least recently, so the connections in
    use keep theirs instead of displacing each other on every request."""
    fn = runtime({"app.py": APP}, env={"KUBELAMBDA_CONCURRENCY": "2"})

    def invoke(sock: socket.socket, name: str) -> int:
        sock.sendall(request(json.dumps({"on": name}), name))
        ((status, _, body),) = read_answers(sock, 1)
        assert status == 200, body
        return int(json.loads(body)["pid"])

    with connect(fn.url) as busy, connect(fn.url) as idle, connect(fn.url) as other:
        invoke(busy, "busy-0")  # taken by the first environment
        invoke(idle, "idle")  # the second; then idle for good
        invoke(busy, "busy-1")  # the first environment's connection, used again
        pids: dict[str, set[int]] = {"busy": set(), "other": set()}
        for n in range(6):
            pids["other"].add(invoke(other, f"other-{n}"))
            pids["busy"].add(invoke(busy, f"busy-{n + 2}"))
    # The idle connection's environment took `other`; `busy` kept its own all along.
    assert len(pids["busy"]) == 1 and len(pids["other"]) == 1, pids
    assert pids["busy"] != pids["other"], pids


def test_a_client_gone_mid_invocation_leaves_the_runtime_working(runtime):
    fn = runtime({"app.py": APP})
    with connect(fn.url) as sock:
        sock.sendall(request("{}", "warm"))
        read_answers(sock, 1)
        sock.sendall(request('{"sleep": 0.5}', "abandoned"))
    # The abandoned invocation runs to its end (as on Lambda); until then the one
    # environment is busy.
    answer = wait_for(
        lambda: (got := fn.invoke('{"after": true}')).status_code != 429 and got,
        timeout=10,
        what="the environment to be free again",
    )
    assert answer.status_code == 200 and answer.json()["event"] == {"after": True}
    assert fn.invoke('{"again": true}').status_code == 200
    assert "working on {'sleep': 0.5}" in fn.logs()


def test_stopping_lets_a_held_invocation_finish(runtime):
    fn = runtime({"app.py": APP})
    with connect(fn.url) as sock, concurrent.futures.ThreadPoolExecutor(1) as pool:
        sock.sendall(request("{}", "warm"))
        read_answers(sock, 1)
        sock.sendall(request('{"sleep": 1.5}', "in-flight"))
        answer = pool.submit(read_answers, sock, 1)
        wait_for(
            lambda: "working on {'sleep': 1.5}" in fn.logs(),
            timeout=10,
            what="the invocation to start",
        )
        fn.process.send_signal(signal.SIGTERM)
        ((status, _, body),) = answer.result()
        assert status == 200 and json.loads(body)["id"] == "in-flight"
        fn.process.wait(10)
        assert sock.recv(1) == b""  # then the connection is closed
    assert fn.process.returncode == 0


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_stopping_answers_a_request_that_arrived_on_a_held_connection(runtime):
    fn = runtime({"app.py": APP})
    with connect(fn.url) as sock:
        sock.sendall(request("{}", "warm"))
        ((_, _, body),) = read_answers(sock, 1)
        worker = json.loads(body)["pid"]
        # The worker holds the connection; a request arrives on it as the server stops, and
        # the worker sees the server's "give it back" first (it was paused meanwhile).
        os.kill(worker, signal.SIGSTOP)
        wait_for(lambda: stopped(worker), timeout=10, what="the worker to stop")
        try:
            sock.sendall(request('{"late": true}', "late"))
            fn.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # time for the server to ask; nothing to wait on in a paused process
        finally:
            os.kill(worker, signal.SIGCONT)
        ((status, headers, body),) = read_answers(sock, 1)
        assert status == 200 and json.loads(body)["id"] == "late", fn.logs()
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""
    assert fn.process.wait(10) == 0


def test_metrics_count_what_workers_answer_and_what_the_server_answers(runtime, tmp_path):
    fn = runtime({"app.py": APP})
    with connect(fn.url) as sock:
        for n in range(3):  # on the held connection
            sock.sendall(request(f'{{"n": {n}}}', f"m-{n}"))
            read_answers(sock, 1)
        sock.sendall(request('{"fail": true}', "m-fail"))
        read_answers(sock, 1)
    with connect(fn.url) as one_shot:  # in a frame
        one_shot.sendall(request("{}", "m-framed", close=True))
        read_answers(one_shot, 1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(fn.invoke, '{"sleep": 2}')
        wait_for(lambda: fn.logs().count("working on") >= 5, timeout=10, what="the slow one")
        assert fn.invoke("{}").status_code == 429
        slow.result()
    text = fn.client.get("/metrics").text
    assert 'outcome="success"} 5.0' in text
    assert 'outcome="error"} 1.0' in text
    assert 'outcome="busy"} 1.0' in text
    assert "kubelambda_runtime_duration_seconds_count{" in text
    assert 'duration_seconds_count{function="function",namespace="default"} 6.0' in text


def test_a_held_connection_not_yet_given_back_when_its_worker_dies_is_closed(runtime):
    fn = runtime({"app.py": APP})
    with connect(fn.url) as held, connect(fn.url) as one_shot:
        held.sendall(request("{}", "warm"))
        ((_, _, body),) = read_answers(held, 1)
        worker = json.loads(body)["pid"]
        # The worker holds `held`; paused, it cannot give it back before the server sends it
        # an invocation in a frame (a Connection: close request is never handed over).
        os.kill(worker, signal.SIGSTOP)
        wait_for(lambda: stopped(worker), timeout=10, what="the worker to stop")
        one_shot.sendall(request("{}", "framed", close=True))
        time.sleep(0.3)
        os.kill(worker, signal.SIGKILL)
        ((status, headers, body),) = read_answers(one_shot, 1)
        error = json.loads(body)
        assert (status, headers["x-amz-function-error"]) == (200, "Unhandled")
        assert error["errorType"] == "Runtime.ExitError" and error["requestId"] == "framed"
        held.settimeout(10)
        assert held.recv(1) == b""  # closed at once, not left waiting for an answer
    assert fn.invoke('{"after": true}').json()["event"] == {"after": True}
