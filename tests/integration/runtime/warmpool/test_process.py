"""A warm pool's pod, as a real process on loopback (``python -I -u -m kubelambda_runtime`` with
KUBELAMBDA_POOL_PORT set): its health, a specialisation with inline files and the invocations
it then serves, what the function sees of the pool (nothing), the requests it refuses, a failed
init, and its stop."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubelambda_runtime.wire import config, processes
from support.runtime import INVOKE_PATH
from support.waiting import GiveUp, free_port, wait_for

TOKEN = "pool-token-3f9c1d7e-a1b2-4c5d-9e8f"
SPECIALIZE = "/_kubelambda/specialize"
HELLO = {"app.py": "def handler(event, context):\n    return {'hello': event.get('name')}\n"}
# What the pool's container has from its image: the function's runtime has it too.
IMAGE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class Pool:
    """One pool process, its ports, and its log."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port, self.invoke_port, self.metrics_port = free_port(), free_port(), free_port()
        self.task_dir = tmp_path / "tasks"
        self.task_dir.mkdir()
        self.log_path = tmp_path / f"pool-{self.port}.log"
        self.env = {
            **IMAGE_ENV,
            "KUBELAMBDA_POOL_PORT": str(self.port),
            "KUBELAMBDA_POOL_TOKEN": TOKEN,
            "KUBELAMBDA_POOL_TASK_DIR": str(self.task_dir),
            "KUBELAMBDA_HOST": "127.0.0.1",
            "KUBELAMBDA_PORT": str(self.invoke_port),
            "KUBELAMBDA_METRICS_PORT": str(self.metrics_port),
            **env,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-u", "-m", "kubelambda_runtime"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        self.runtime = httpx.Client(base_url=f"http://127.0.0.1:{self.invoke_port}", timeout=30)
        wait_for(
            lambda: self.health()[1]["state"] == "waiting",
            timeout=30,
            what=f"the pool on port {self.port} to wait",
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.process.poll() is not None:
            raise GiveUp(f"the pool exited with {self.process.returncode}:\n{self.logs()}")
        answer = self.client.get("/healthz")
        return answer.status_code, answer.json()

    def specialize(
        self,
        files: dict[str, str] | None = None,
        *,
        env: dict[str, str] | None = None,
        function: str = "team-a/hello",
    ) -> httpx.Response:
        body = {
            "function": function,
            "env": {"_HANDLER": "app.handler", "AWS_LAMBDA_FUNCTION_NAME": "hello", **(env or {})},
            "files": {name: textwrap.dedent(text) for name, text in (files or HELLO).items()},
        }
        return self.client.post(SPECIALIZE, json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    def invoke(self, event: dict[str, Any]) -> httpx.Response:
        return self.runtime.post(INVOKE_PATH, json=event)

    def runtime_pid(self) -> int:
        table = processes.snapshot()
        (pid,) = processes.children(table, self.process.pid)
        return pid

    def forked_ahead(self) -> int:
        """The runtime the waiting pool forked ahead: its only child."""
        children = wait_for(
            lambda: processes.children(processes.snapshot(), self.process.pid),
            timeout=15,
            what="the waiting pool to have forked its runtime ahead",
        )
        (pid,) = children
        return pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        self.runtime.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_pool(tmp_path: Path) -> Iterator[Any]:
    pools: list[Pool] = []

    def start(**env: str) -> Pool:
        pool = Pool(tmp_path / f"pool{len(pools)}", **env)
        pools.append(pool)
        return pool

    (tmp_path / "pool0").mkdir()
    (tmp_path / "pool1").mkdir()
    yield start
    for pool in pools:
        pool.stop()


def test_a_specialised_pool_pod_serves_the_function_on_the_usual_ports(start_pool):
    pool = start_pool()
    assert pool.health() == (200, {"state": "waiting"})
    answer = pool.specialize()
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["function"] == "team-a/hello"
    assert document["start"] == "fork"  # the fast path: the pool's image variables are kept
    assert 0 < document["initMs"] < 10_000
    assert pool.health() == (200, {"state": "specialized", "function": "team-a/hello"})
    assert pool.invoke({"name": "pool"}).json() == {"hello": "pool"}
    metrics = httpx.get(f"http://127.0.0.1:{pool.metrics_port}/metrics", timeout=10)
    assert "kubelambda_runtime_invocations_total{" in metrics.text
    assert httpx.get(f"http://127.0.0.1:{pool.metrics_port}/healthz").json() == {"status": "ready"}


def _gone(pid: int) -> bool:
    process = processes.snapshot().get(pid)
    return process is None or process.state == "Z"


# Up to the request's limit of 256 KiB (its names and values, and a byte each for = and NUL).
BIG_ENV = {f"V{index:03}": "x" * 2040 for index in range(128)}


@pytest.mark.parametrize("env", [{}, BIG_ENV], ids=["small environment", "256 KiB environment"])
def test_the_runtime_is_forked_while_the_pool_waits_and_only_ordered_at_the_request(
    start_pool, env
):
    # The fork, and the child's shedding of the pool's descriptors and handlers, are done before
    # the request: a specialisation only sends the child its order.
    pool = start_pool()
    ahead = pool.forked_ahead()
    answer = pool.specialize(env=env)
    assert answer.status_code == 200, answer.text
    assert answer.json()["start"] == "fork"
    assert pool.runtime_pid() == ahead
    assert pool.invoke({"name": "ahead"}).json() == {"hello": "ahead"}


def test_a_runtime_forked_ahead_that_died_is_replaced_by_a_fork_at_the_request(start_pool):
    pool = start_pool()
    ahead = pool.forked_ahead()
    os.kill(ahead, signal.SIGKILL)
    wait_for(lambda: _gone(ahead), timeout=15, what="the pool to reap its child")
    assert pool.health() == (200, {"state": "waiting"})
    answer = pool.specialize()
    assert answer.status_code == 200, answer.text
    assert answer.json()["start"] == "fork"
    assert pool.runtime_pid() != ahead
    assert pool.invoke({"name": "later"}).json() == {"hello": "later"}


# Reads its environment, its folders, and scans its own memory for the pool's token (given in
# two halves, so that the whole token is nowhere in the process unless the pool left it there).
SPY = """\
import os

def handler(event, context):
    first, second = event["first"].encode(), event["second"].encode()
    found = []
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as memory:
        for line in maps:
            where, permissions = line.split()[:2]
            if not permissions.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(part, 16) for part in where.split("-"))
            try:
                memory.seek(start)
                chunk = memory.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            at = chunk.find(first)
            while at >= 0:
                if chunk[at + len(first) : at + len(first) + len(second)] == second:
                    found.append(line.strip())
                at = chunk.find(first, at + 1)
    with open("/proc/self/environ", "rb") as environ:
        initial = environ.read().decode(errors="replace").split("\\0")
    return {
        "env": dict(os.environ),
        "initial": [entry for entry in initial if entry],
        "cwd": os.getcwd(),
        "files": sorted(set(os.listdir(os.environ["LAMBDA_TASK_ROOT"])) - {"__pycache__"}),
        "token_found_in": found,
    }
"""


def test_the_function_sees_exactly_its_environment_and_nothing_of_the_pool(start_pool):
    pool = start_pool()
    given = {
        "_HANDLER": "app.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "spy",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "7",
        "KUBELAMBDA_NAMESPACE": "team-a",
        "TABLE_NAME": "orders",
        "DB_PASSWORD": "from-a-secret",
    }
    answer = pool.specialize({"app.py": SPY, "lib/helper.py": "X = 1\n"}, env=given)
    assert answer.status_code == 200, answer.text
    half = len(TOKEN) // 2
    seen = pool.invoke({"first": TOKEN[:half], "second": TOKEN[half:]}).json()
    task_root = seen["env"]["LAMBDA_TASK_ROOT"]
    # A fresh folder under the pool's task folder, holding the files, the runtime's cwd.
    assert Path(task_root).parent == pool.task_dir
    assert seen["cwd"] == task_root
    assert seen["files"] == ["app.py", "lib"]
    assert (Path(task_root) / "lib" / "helper.py").read_text() == "X = 1\n"
    # Exactly: the image's variables, the request's, the task root and the pod's ports, plus
    # what the runtime adds as in any function pod.
    started_with = {
        **IMAGE_ENV,
        **given,
        "LAMBDA_TASK_ROOT": task_root,
        "KUBELAMBDA_HOST": "127.0.0.1",
        "KUBELAMBDA_PORT": str(pool.invoke_port),
        "KUBELAMBDA_METRICS_PORT": str(pool.metrics_port),
    }
    expected = config.worker_environment(
        config.from_environment(started_with),
        base=started_with,
        log_stream_name=seen["env"]["AWS_LAMBDA_LOG_STREAM_NAME"],
    )
    assert seen["env"] == expected
    # Nothing of the pool: not its variables, not the token, not even in /proc/self/environ or
    # anywhere in the function's memory.
    assert not [entry for entry in seen["initial"] if "KUBELAMBDA_POOL" in entry or TOKEN in entry]
    assert seen["token_found_in"] == []


def _refusal_cases() -> list[Any]:
    good = {"function": "ns/fn", "env": {"_HANDLER": "app.handler"}, "files": HELLO}
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    def case(name: str, status: int, body: Any, *, headers: Any = None, words: str = "") -> Any:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return pytest.param(bearer if headers is None else headers, content, status, words, id=name)

    return [
        case("no token", 401, good, headers={}, words="no bearer token"),
        case("wrong token", 401, good, headers={"Authorization": "Bearer nope"}, words="wrong"),
        case("not bearer", 401, good, headers={"Authorization": f"Basic {TOKEN}"}),
        case("bad JSON", 400, b"{not json", words="not JSON"),
        case("not an object", 400, [1, 2], words="must be an object"),
        case("unknown field", 400, {**good, "code": 1}, words="unknown fields: code"),
        case("function without namespace", 400, {**good, "function": "fn"}, words="namespace"),
        case("env not strings", 400, {**good, "env": {"A": 1}}, words='"env" must be'),
        case("files not an object", 400, {**good, "files": ["app.py"]}, words='"files" must'),
        case("no handler", 400, {**good, "env": {}}, words="_HANDLER is not set"),
        case(
            "task root in env",
            400,
            {**good, "env": {"_HANDLER": "a.b", "LAMBDA_TASK_ROOT": "/var/task"}},
            words="leave LAMBDA_TASK_ROOT out",
        ),
        case(
            "pool variable in env",
            400,
            {**good, "env": {"_HANDLER": "a.b", "KUBELAMBDA_POOL_TOKEN": "x"}},
            words="pool's own variable",
        ),
        case(
            "another port",
            400,
            {**good, "env": {"_HANDLER": "a.b", "KUBELAMBDA_PORT": "1"}},
            words="this pool pod serves",
        ),
        case("absolute path", 400, {**good, "files": {"/etc/x.py": ""}}, words="is absolute"),
        case("dot-dot", 400, {**good, "files": {"../x.py": ""}}, words="'..'"),
        case("dot-dot inside", 400, {**good, "files": {"a/../../x.py": ""}}, words="'..'"),
        case("file and folder", 400, {**good, "files": {"a": "", "a/b.py": ""}}, words="both"),
        case("over 8 MiB", 413, b"x" * (8 * 1024 * 1024 + 1), words="over the limit"),
    ]


@pytest.fixture(scope="module")
def waiting_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    pool = Pool(tmp_path_factory.mktemp("waiting"))
    yield pool
    pool.stop()


@pytest.mark.parametrize(("headers", "body", "status", "words"), _refusal_cases())
def test_a_refused_specialisation_changes_nothing(waiting_pool, headers, body, status, words):
    answer = waiting_pool.client.post(
        SPECIALIZE, content=body, headers={**headers, "content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert waiting_pool.health() == (200, {"state": "waiting"})
    assert list(waiting_pool.task_dir.iterdir()) == []  # nothing written either


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (f"POST {SPECIALIZE} HTTP/1.1\r\nAuthorization: Bearer nope\r\n", 401),
        ("POST /healthz HTTP/1.1\r\n", 400),
    ],
    ids=["wrong token", "not a specialise request"],
)
def test_a_body_is_refused_before_it_is_read(waiting_pool, head, status):
    # Only the holder of the token makes the pool hold a body (up to 8 MiB).
    with socket.create_connection(("127.0.0.1", waiting_pool.port), timeout=10) as sock:
        sock.sendall(f"{head}Content-Length: 8000000\r\n\r\n".encode())
        answer = sock.makefile("rb").read()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer


def test_a_pool_pod_is_specialised_once(start_pool):
    pool = start_pool()
    assert pool.specialize().status_code == 200
    again = pool.specialize(function="team-a/other")
    assert again.status_code == 409
    assert again.json()["state"] == "specialized"
    assert pool.health()[1]["function"] == "team-a/hello"


@pytest.mark.parametrize(
    ("source", "error_type", "words"),
    [
        ("import no_such_module\n", "Runtime.ImportModuleError", "No module named"),
        ("raise RuntimeError('no config')\n", "RuntimeError", "no config"),
        ("import os\nos._exit(3)\n", "Runtime.ExitError", "exit"),
    ],
    ids=["does not import", "init raises", "init exits"],
)
def test_a_failed_init_answers_422_and_leaves_the_pod_failed(start_pool, source, error_type, words):
    pool = start_pool()
    answer = pool.specialize({"app.py": source})
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["errorType"] == error_type
    assert words in error["errorMessage"]
    status, health = pool.health()
    assert (status, health["state"], health["error"]["errorType"]) == (503, "failed", error_type)
    assert pool.specialize().status_code == 409  # nothing broken goes back to the pool
    # The broken runtime is stopped: the pool has nothing left under it.
    wait_for(
        lambda: not processes.descendants(processes.snapshot(), pool.process.pid),
        timeout=15,
        what="the failed runtime to end",
    )


def test_an_init_over_the_bound_answers_504(start_pool):
    pool = start_pool(KUBELAMBDA_POOL_INIT_TIMEOUT="0.5")
    answer = pool.specialize({"app.py": "import time\ntime.sleep(30)\n"})
    assert answer.status_code == 504, answer.text
    assert "not ready within 0.5 s" in answer.json()["error"]
    assert pool.health()[0:1] == (503,)
    assert pool.health()[1]["state"] == "failed"


def test_an_environment_only_a_new_process_applies_starts_one(start_pool):
    pool = start_pool()
    ahead = pool.forked_ahead()
    answer = pool.specialize({"app.py": SPY}, env={"LANG": "C"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["start"] == "exec"
    wait_for(lambda: _gone(ahead), timeout=15, what="the runtime forked ahead to be killed")
    seen = pool.invoke({"first": "x", "second": "y"}).json()
    assert seen["env"]["LANG"] == "C"
    assert not [entry for entry in seen["initial"] if "KUBELAMBDA_POOL" in entry]


def test_the_runtime_ending_makes_the_pod_exited(start_pool):
    pool = start_pool()
    assert pool.specialize().status_code == 200
    os.kill(pool.runtime_pid(), signal.SIGKILL)
    wait_for(lambda: pool.health()[1]["state"] == "exited", timeout=15, what="exited")
    assert pool.health()[0] == 503


def test_sigterm_lets_an_invocation_in_progress_finish(start_pool, tmp_path):
    pool = start_pool()
    started = tmp_path / "started"
    slow = f"""\
        import time
        def handler(event, context):
            open({str(started)!r}, "w").close()
            time.sleep(1)
            return "finished"
        """
    assert pool.specialize({"app.py": slow}).status_code == 200
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        invocation = executor.submit(pool.invoke, {})
        wait_for(started.exists, timeout=15, what="the invocation to start")
        pool.process.send_signal(signal.SIGTERM)
        assert invocation.result(timeout=15).json() == "finished"
    assert pool.process.wait(15) == 0
    assert "ended (exit status 0)" in pool.logs()


def test_sigterm_ends_a_waiting_pool_at_once(start_pool):
    pool = start_pool()
    ahead = pool.forked_ahead()
    pool.process.send_signal(signal.SIGTERM)
    assert pool.process.wait(5) == 0
    wait_for(lambda: _gone(ahead), timeout=15, what="the runtime forked ahead to end with it")


def test_a_pool_without_its_token_does_not_start():
    done = subprocess.run(
        [sys.executable, "-I", "-u", "-m", "kubelambda_runtime"],
        env={**IMAGE_ENV, "KUBELAMBDA_POOL_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "KUBELAMBDA_POOL_TOKEN is not set" in done.stderr
