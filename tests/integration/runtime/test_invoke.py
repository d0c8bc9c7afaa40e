"""The runtime as a real process: what a handler receives and what the caller gets back."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from support.waiting import free_port, wait_for

ECHO = """
import os

INITS = [os.getpid()]
calls = 0


def handler(event, context):
    global calls
    calls += 1
    with open("/tmp/kubelambda-test-scratch-" + context.aws_request_id, "w") as f:
        f.write("ok")
    cc = context.client_context
    return {
        "event": event,
        "pid": os.getpid(),
        "inits": len(INITS),
        "calls": calls,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "identity": [context.identity.cognito_identity_id,
                         context.identity.cognito_identity_pool_id],
            "client_context": None if cc is None else {
                "custom": cc.custom, "env": cc.env,
                "app_title": cc.client.app_title if cc.client else None},
            "remaining": context.get_remaining_time_in_millis(),
        },
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_VERSION", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_REGION",
            "AWS_DEFAULT_REGION", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
            "TZ", "AWS_EXECUTION_ENV", "LAMBDA_RUNTIME_DIR", "MY_SETTING")},
    }
"""

FUNCTION_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "echo",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_TIMEOUT": "5",
    "AWS_REGION": "eu-west-1",
    "MY_SETTING": "from the pod",
}


def test_event_in_result_out_with_lambdas_context_and_environment(runtime):
    fn = runtime({"app.py": ECHO}, env=FUNCTION_ENV)
    client_context = base64.b64encode(
        json.dumps({"custom": {"k": "v"}, "env": {"e": 1}, "client": {"app_title": "t"}}).encode()
    ).decode()
    answer = fn.invoke(
        json.dumps({"hello": ["world", 1]}),
        **{
            "Lambda-Runtime-Aws-Request-Id": "req-1",
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:123:function:echo",
            "Lambda-Runtime-Client-Context": client_context,
        },
    )
    assert answer.status_code == 200
    assert "x-amz-function-error" not in answer.headers
    assert answer.headers["lambda-runtime-aws-request-id"] == "req-1"
    result = answer.json()
    assert result["event"] == {"hello": ["world", 1]}
    context = result["context"]
    assert context["function_name"] == "echo"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:123:function:echo"
    assert context["memory_limit_in_mb"] == "256"  # a string, as on Lambda
    assert context["aws_request_id"] == "req-1"
    assert context["log_group_name"] == "/aws/lambda/echo"
    assert "[$LATEST]" in context["log_stream_name"]
    assert context["identity"] == [None, None]
    assert context["client_context"] == {"custom": {"k": "v"}, "env": {"e": 1}, "app_title": "t"}
    assert 0 < context["remaining"] <= 5000
    env = result["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "echo"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(fn.code_dir)
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/echo"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == context["log_stream_name"]
    assert env["TZ"] == ":UTC"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    assert env["LAMBDA_RUNTIME_DIR"]
    assert env["MY_SETTING"] == "from the pod"


def test_defaults_when_the_gateway_sends_no_headers(runtime):
    fn = runtime({"app.py": ECHO}, env={"AWS_LAMBDA_FUNCTION_NAME": "plain"})
    answer = fn.invoke(b"")  # boto3 sends no body when Payload is omitted
    result = answer.json()
    assert result["event"] == {}
    context = result["context"]
    request_id = answer.headers["lambda-runtime-aws-request-id"]
    assert context["aws_request_id"] == request_id and len(request_id) == 36
    assert context["invoked_function_arn"] == (
        "arn:aws:lambda:us-east-1:000000000000:function:plain"
    )
    assert context["memory_limit_in_mb"] == "128"
    assert 2000 < context["remaining"] <= 3000  # default timeout: 3 s
    assert context["client_context"] is None


def test_the_deadline_header_drives_the_remaining_time(runtime):
    fn = runtime({"app.py": ECHO}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "60"})
    answer = fn.invoke(
        "{}", **{"Lambda-Runtime-Deadline-Ms": str(int(__import__("time").time() * 1000) + 1500)}
    )
    assert 0 < answer.json()["context"]["remaining"] <= 1500


@pytest.mark.parametrize("connection", ["keep-alive", "close"], ids=["handed-over", "framed"])
def test_a_deadline_header_cannot_extend_the_timeout(runtime, connection):
    # A caller's deadline a minute away must not let a 1 s function run for a minute.
    fn = runtime({"app.py": ECHO}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    later = str(int(time.time() * 1000) + 60_000)
    headers = {"Lambda-Runtime-Deadline-Ms": later, "Connection": connection}
    for _ in range(2):  # the second one reaches a warm worker on a kept-alive connection
        answer = fn.invoke("{}", **headers)
        assert 0 < answer.json()["context"]["remaining"] <= 1000


def test_module_level_code_runs_once_per_environment(runtime):
    fn = runtime({"app.py": ECHO})
    first, second, third = (fn.invoke("{}").json() for _ in range(3))
    assert first["inits"] == second["inits"] == third["inits"] == 1
    assert [first["calls"], second["calls"], third["calls"]] == [1, 2, 3]
    assert first["pid"] == second["pid"] == third["pid"]


def test_tmp_is_writable(runtime):
    fn = runtime({"app.py": ECHO})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "tmp-check"})
    assert answer.status_code == 200
    with open("/tmp/kubelambda-test-scratch-tmp-check") as written:
        assert written.read() == "ok"


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("'text'", '"text"'),
        ("None", "null"),
        ("[1, 2]", "[1, 2]"),
        ("decimal.Decimal('1.5')", "1.5"),
        ("{'n': decimal.Decimal('7')}", '{"n": 7}'),
    ],
)
def test_return_values_are_marshalled_as_json(runtime, returned, expected):
    fn = runtime(
        {"app.py": f"import decimal\ndef handler(event, context):\n    return {returned}\n"}
    )
    answer = fn.invoke("{}")
    assert answer.status_code == 200
    assert json.loads(answer.content) == json.loads(expected)


def test_log_tail_on_request(runtime):
    fn = runtime({"app.py": "def handler(event, context):\n    print('tail me')\n    return 1\n"})
    answer = fn.invoke("{}", **{"X-Amz-Log-Type": "Tail", "Lambda-Runtime-Aws-Request-Id": "r-9"})
    tail = base64.b64decode(answer.headers["x-amz-log-result"]).decode()
    assert "START RequestId: r-9" in tail
    assert "\ntail me\n" in tail  # printed lines are unprefixed, as on Lambda
    assert "REPORT RequestId: r-9" in tail
    assert "x-amz-log-result" not in fn.invoke("{}").headers


def test_logs_carry_the_request_id(runtime):
    fn = runtime(
        {
            "app.py": """
            import logging
            logger = logging.getLogger()
            logger.setLevel(logging.INFO)

            def handler(event, context):
                print("printed line")
                logger.info("logged %s", "line")
                return "ok"
            """
        }
    )
    fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "log-req"})
    fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "log-req-2"})

    def lines() -> list[str] | None:
        found = fn.logs().splitlines()
        return (
            found if any(line.startswith("REPORT RequestId: log-req-2") for line in found) else None
        )

    found = wait_for(lines, timeout=5, what="the REPORT line in the runtime's log")
    assert "START RequestId: log-req Version: $LATEST" in found
    assert "printed line" in found  # unprefixed, as on Lambda
    logged = [line for line in found if line.startswith("[INFO]")]
    assert logged[0].split("\t")[2:] == ["log-req", "logged line"]
    assert logged[0].split("\t")[1].endswith("Z")
    assert "END RequestId: log-req" in found
    report = next(line for line in found if line.startswith("REPORT RequestId: log-req\t"))
    for part in (
        "Duration: ",
        "Billed Duration: ",
        "Memory Size: 128 MB",
        "Max Memory Used: ",
        "Init Duration: ",
    ):
        assert part in report
    second_report = next(line for line in found if line.startswith("REPORT RequestId: log-req-2"))
    assert "Init Duration" not in second_report  # only the first invocation after init


def test_metrics_count_outcomes(runtime):
    fn = runtime(
        {
            "app.py": """
            def handler(event, context):
                if event.get("fail"):
                    raise ValueError("x")
                return 1
            """
        },
        env={"AWS_LAMBDA_FUNCTION_NAME": "counted", "KUBELAMBDA_NAMESPACE": "team-a"},
    )
    fn.invoke('{"fail": false}')
    fn.invoke('{"fail": false}')
    fn.invoke('{"fail": true}')
    text = fn.client.get("/metrics").text
    labels = 'function="counted",namespace="team-a"'
    assert f'kubelambda_runtime_invocations_total{{{labels},outcome="success"}} 2.0' in text
    assert f'kubelambda_runtime_invocations_total{{{labels},outcome="error"}} 1.0' in text
    assert f"kubelambda_runtime_duration_seconds_count{{{labels}}} 3.0" in text
    assert f"kubelambda_runtime_init_seconds_count{{{labels}}} 1.0" in text


def test_the_metrics_port_serves_metrics_and_health_only(runtime):
    metrics_port = free_port()
    fn = runtime(
        {"app.py": "def handler(event, context):\n    return 1\n"},
        env={"KUBELAMBDA_METRICS_PORT": str(metrics_port)},
    )
    assert fn.invoke("{}").json() == 1
    with httpx.Client(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10) as admin:
        assert 'outcome="success"} 1.0' in admin.get("/metrics").text
        assert admin.get("/healthz").json() == {"status": "ready"}
        refused = admin.post("/2015-03-31/functions/function/invocations", content="{}")
        assert refused.status_code == 404


# Modules the runtime's server or worker imports; a function's files of these names broke it.
SHADOWED = ["http", "logging", "uuid", "signal", "select", "struct", "json", "socket", "asyncio"]
HOSTILE = "import os\nos._exit(17)  # imported by the runtime instead of the standard library\n"


def test_code_named_like_the_standard_library_does_not_break_the_runtime(runtime, tmp_path):
    files = {f"{name}.py": HOSTILE for name in SHADOWED}
    files["app.py"] = "import helper\ndef handler(event, context):\n    return helper.VALUE\n"
    # A PYTHONPATH in the function's env reaches the handler, not the runtime.
    library = tmp_path / "library"
    library.mkdir()
    (library / "helper.py").write_text("VALUE = 'from PYTHONPATH'\n")
    (library / "http.py").write_text(HOSTILE)
    fn = runtime(files, env={"PYTHONPATH": str(library), "PYTHONHOME": str(tmp_path / "nowhere")})
    for _ in range(2):  # framed on a new connection, then handed over on the kept one
        answer = fn.invoke("{}")
        assert answer.status_code == 200, fn.logs()
        assert answer.json() == "from PYTHONPATH"
    assert fn.client.get("/healthz").json() == {"status": "ready"}
    assert fn.client.get("/metrics").status_code == 200
