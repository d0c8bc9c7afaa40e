"""Each invocation's answer carries its billed duration (``X-Kubelambda-Billed-Duration-Ms``),
the same number as its REPORT line's ``Billed Duration``, so the gateway's usage metrics count
what the runtime billed rather than the gateway's own timing of the trip."""

from __future__ import annotations

import pytest

from support.waiting import wait_for

WAYS = {"handed-over": {}, "in-frames": {"Connection": "close"}}
HEADER = "x-kubelambda-billed-duration-ms"


def _billed_in_report(fn, request_id: str) -> int:
    def found() -> str | None:
        for line in fn.log_path.read_bytes().decode(errors="replace").split("\n"):
            if line.startswith(f"REPORT RequestId: {request_id}\t"):
                return line
        return None

    line = wait_for(found, timeout=10, what=f"the REPORT line of {request_id}")
    fields = dict(part.split(": ", 1) for part in line.split("\t"))
    return int(fields["Billed Duration"].removesuffix(" ms"))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import time\ndef handler(e, c):\n    time.sleep(0.3)\n    return 1\n", None),
        ("def handler(e, c):\n    raise ValueError('no')\n", "ValueError"),
        ("import time\ndef handler(e, c):\n    time.sleep(60)\n", "Sandbox.Timedout"),
        (
            "import os, time\ndef handler(e, c):\n    time.sleep(0.3)\n    os._exit(2)\n",
            "Runtime.ExitError",
        ),
    ],
    ids=["success", "exception", "timeout", "crash"],
)
def test_the_answer_carries_the_billed_duration_of_its_report(runtime, way, source, error):
    fn = runtime({"app.py": source}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    request_id = f"bill-{way}"
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": request_id, **WAYS[way]})
    assert answer.status_code == 200
    if error is not None:
        assert answer.json()["errorType"] == error
    billed = int(answer.headers[HEADER])
    assert billed == _billed_in_report(fn, request_id)
    assert billed >= (1000 if error == "Sandbox.Timedout" else 300 if "sleep(0.3)" in source else 1)


def test_an_invocation_answered_with_an_init_error_is_billed_as_its_report(runtime):
    fn = runtime({"app.py": "import no_such_module\n"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "bill-init"})
    assert answer.json()["errorType"] == "Runtime.ImportModuleError"
    assert int(answer.headers[HEADER]) == _billed_in_report(fn, "bill-init")


def test_requests_that_ran_nothing_carry_no_billed_duration(runtime):
    fn = runtime({"app.py": "def handler(e, c):\n    return 1\n"})
    answer = fn.invoke("not json", **{"Lambda-Runtime-Aws-Request-Id": "bill-bad"})
    assert answer.status_code == 400
    assert HEADER not in answer.headers
