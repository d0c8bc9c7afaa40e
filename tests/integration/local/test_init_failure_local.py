"""``kubelambda local`` with a function whose init fails: it says so in its output, and each
invocation through the gateway is answered with the init error, as Lambda answers it."""

from __future__ import annotations

import json

from support.local import lambda_client

MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: broken}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: "import no_such_module\\n"}}}
"""


def test_local_mode_reports_a_failed_init_and_answers_its_error(local_mode):
    local = local_mode(MANIFEST)
    answer = lambda_client(local.url).invoke(FunctionName="broken", Payload=b"{}")
    assert answer["StatusCode"] == 200, local.output()
    assert answer["FunctionError"] == "Unhandled"
    document = json.loads(answer["Payload"].read())
    assert document["errorType"] == "Runtime.ImportModuleError"
    assert document["errorMessage"] == (
        "Unable to import module 'app': No module named 'no_such_module'"
    )
    # The first instance starts for that invocation; its failed init is said once it is known.
    local.wait_for_line("broken: init failed; invocations answer with the error")
