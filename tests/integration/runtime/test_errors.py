"""Failures as Lambda reports them: exceptions, init faults, timeouts, crashes, bad requests."""

from __future__ import annotations

import json

import httpx
import pytest

from support.waiting import wait_for


def test_a_handler_exception_is_an_unhandled_function_error(runtime):
    fn = runtime(
        {
            "app.py": """
            def helper():
                raise ValueError("something broke")

            def handler(event, context):
                helper()
            """
        }
    )
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "err-1"})
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    error = answer.json()
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "something broke"
    assert error["requestId"] == "err-1"
    trace = error["stackTrace"]
    assert len(trace) == 2, trace  # starts in user code: no runtime frames
    assert trace[0].startswith(f'  File "{fn.code_dir}/app.py", line 6, in handler')
    assert "raise ValueError" in trace[1]
    assert fn.invoke("{}").json()["errorType"] == "ValueError"  # and it keeps serving


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        (
            {"app.py": "import no_such_module\n"},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'no_such_module'",
        ),
        (
            {"other.py": "x = 1\n"},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'app'",
        ),
        (
            {"app.py": "def other(e, c):\n    return 1\n"},
            "app.handler",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module 'app'",
        ),
        (
            {"app.py": "def handler(event, context)\n    return 1\n"},
            "app.handler",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'app'",
        ),
        ({"app.py": "x = 1\n"}, "app", "Runtime.MalformedHandlerName", "Bad handler 'app'"),
        (
            {"app.py": "raise RuntimeError('bad config')\n"},
            "app.handler",
            "RuntimeError",
            "bad config",
        ),
    ],
)
def test_init_faults(runtime, files, handler, error_type, message):
    fn = runtime(files, handler=handler)
    health = fn.client.get("/healthz")
    assert health.status_code == 200  # the pod serves: invocations answer the init error
    assert health.json()["status"] == "init_failed"
    assert health.json()["error"]["errorType"] == error_type
    for request_id in ("init-1", "init-2"):  # init is retried on each invocation, as on Lambda
        answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": request_id})
        assert answer.status_code == 200
        assert answer.headers["x-amz-function-error"] == "Unhandled"
        error = answer.json()
        assert error["errorType"] == error_type
        assert error["errorMessage"].startswith(message), error["errorMessage"]
        assert error["requestId"] == request_id


def test_init_recovers_once_the_code_is_fixed(runtime):
    fn = runtime({"app.py": "import not_yet_there\ndef handler(e, c):\n    return 'fine'\n"})
    assert fn.invoke("{}").json()["errorType"] == "Runtime.ImportModuleError"
    (fn.code_dir / "not_yet_there.py").write_text("")
    answer = fn.invoke("{}")
    assert answer.json() == "fine"
    assert fn.client.get("/healthz").json() == {"status": "ready"}


def test_unserialisable_result_is_a_marshal_error(runtime):
    fn = runtime({"app.py": "def handler(event, context):\n    return {1, 2}\n"})
    answer = fn.invoke("{}")
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    error = answer.json()
    assert error["errorType"] == "Runtime.MarshalError"
    assert error["errorMessage"].startswith("Unable to marshal response: Object of type set")


@pytest.mark.parametrize(
    "hang",
    [
        "while True:\n            pass",  # a Python loop
        "ctypes.CDLL(None).sleep(120)",  # a blocking C call that ignores signals
    ],
    ids=["endless-loop", "blocking-c-call"],
)
def test_a_timeout_does_not_wedge_the_runtime(runtime, hang):
    code = (
        "import ctypes, os\nINIT_PID = os.getpid()\n"
        f"def handler(event, context):\n    if event.get('hang'):\n        {hang}\n"
        "    return INIT_PID\n"
    )
    fn = runtime({"app.py": code}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    first_pid = fn.invoke("{}").json()
    answer = fn.invoke('{"hang": true}', **{"Lambda-Runtime-Aws-Request-Id": "slow-1"})
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    error = answer.json()
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"] == "RequestId: slow-1 Error: Task timed out after 1.00 seconds"
    next_pid = fn.invoke("{}").json()
    assert isinstance(next_pid, int) and next_pid != first_pid  # a fresh environment ran init
    assert "Task timed out after 1.00 seconds" in fn.logs()


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("sys.exit(3)", "exit status 3"),
        ("os._exit(4)", "exit status 4"),
        ("ctypes.string_at(0)", "signal: segmentation fault"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "signal: killed"),
        ("bytearray(8 * 1024 ** 3)", "out of memory"),
    ],
    ids=["sys.exit", "os._exit", "segfault", "killed", "out-of-memory"],
)
def test_a_crash_is_an_exit_error_and_the_next_invocation_works(runtime, statement, reason):
    code = (
        "import ctypes, os, signal, sys\nINIT_PID = os.getpid()\n"
        f"def handler(event, context):\n    if event.get('crash'):\n        {statement}\n"
        "    return INIT_PID\n"
    )
    fn = runtime({"app.py": code}, env={"KUBELAMBDA_MEMORY_RLIMIT": "1"})
    first_pid = fn.invoke("{}").json()
    answer = fn.invoke('{"crash": true}', **{"Lambda-Runtime-Aws-Request-Id": "crash-1"})
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    error = answer.json()
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == f"RequestId: crash-1 Error: Runtime exited with error: {reason}"
    next_pid = fn.invoke("{}").json()
    assert isinstance(next_pid, int) and next_pid != first_pid


SLOW = """
import os, time

def handler(event, context):
    open(os.path.join(os.environ["MARKER_DIR"], context.aws_request_id), "w").close()
    time.sleep(event.get("sleep", 0))
    return os.getpid()
"""


def test_one_more_than_concurrency_gets_429_at_once(runtime, tmp_path):
    import concurrent.futures

    fn = runtime({"app.py": SLOW}, env={"MARKER_DIR": str(tmp_path)})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(fn.invoke, '{"sleep": 3}', **{"Lambda-Runtime-Aws-Request-Id": "busy-1"})
        wait_for(
            lambda: (tmp_path / "busy-1").exists(), timeout=10, what="the first invocation to start"
        )
        extra = fn.invoke("{}")
        assert not slow.done(), "the 429 must not wait for the running invocation"
        assert extra.status_code == 429
        assert extra.json()["errorType"] == "TooManyRequestsException"
        assert slow.result().status_code == 200


def test_concurrency_runs_separate_environments_at_once(runtime, tmp_path):
    import concurrent.futures

    fn = runtime({"app.py": SLOW}, env={"MARKER_DIR": str(tmp_path), "KUBELAMBDA_CONCURRENCY": "2"})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: fn.invoke('{"sleep": 1}'), range(2)))
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() != answers[1].json()  # two processes, two environments
    assert fn.invoke('{"sleep": 0}').status_code == 200


def test_bad_requests(runtime):
    fn = runtime({"app.py": "def handler(event, context):\n    return event\n"})
    not_json = fn.invoke("{not json")
    assert not_json.status_code == 400
    assert not_json.json()["errorType"] == "InvalidRequestContentException"
    assert "Could not parse request body into json" in not_json.json()["errorMessage"]

    too_deep = fn.invoke(b"[" * 200_000 + b"]" * 200_000)
    assert too_deep.status_code == 400
    assert "Could not parse request body into json" in too_deep.json()["errorMessage"]
    assert fn.invoke('{"still": "working"}').json() == {"still": "working"}

    too_big = fn.invoke(b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert too_big.status_code == 413
    assert too_big.json()["errorType"] == "RequestTooLargeException"

    unknown = fn.client.post("/2015-03-31/functions/other/invocations", content="{}")
    assert unknown.status_code == 404
    assert json.loads(unknown.content)["errorType"] == "ResourceNotFoundException"

    wrong_method = fn.client.get("/2015-03-31/functions/function/invocations")
    assert wrong_method.status_code == 405

    assert fn.invoke('{"still": "fine"}').json() == {"still": "fine"}


def test_a_crash_during_init_is_an_exit_error(runtime):
    fn = runtime({"app.py": "import os\nos._exit(4)\n"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "boom"})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    error = answer.json()
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == "Runtime exited with error: exit status 4"
    assert error["requestId"] == "boom"


FORGER = """
import os, struct, sys

def handler(event, context):
    if event.get("forge"):
        # The worker's socket to the server is its first argument: claim a 400 MB frame
        # and start sending it, as a handler that found the descriptor could.
        fd = int(sys.argv[1])
        os.write(fd, struct.pack("!II", 16, 400_000_000) + b"{}" * 8 + b"x" * 1_000_000)
    return "fine"
"""


@pytest.mark.parametrize("connection", ["keep-alive", "close"], ids=["handed-over", "framed"])
def test_a_forged_frame_from_a_handler_is_a_crash_not_a_buffer(runtime, connection):
    fn = runtime({"app.py": FORGER}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "20"})
    assert fn.invoke("{}", Connection=connection).json() == "fine"
    body = fn.invoke('{"forge": true}', Connection=connection).json()
    # Never Sandbox.Timedout after 20 s, the server waiting for (and buffering) 400 MB: a
    # worker holding the connection answered it itself; a framed one is dropped at once.
    assert body == "fine" or body["errorType"] == "Runtime.ExitError", fn.logs()
    wait_for(
        lambda: "a worker sent a frame of 16 + 400000000 bytes" in fn.logs(),
        timeout=10,
        what="the server to drop the worker that forged a frame",
    )
    # A new connection (the one that worker held went with it) finds a fresh environment.
    again = httpx.post(f"{fn.url}/2015-03-31/functions/function/invocations", content=b"{}")
    assert again.json() == "fine"
