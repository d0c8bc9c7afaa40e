"""Manifests the tests apply: a Function with inline code, as a user would write it."""

from __future__ import annotations

from typing import Any


def inline_function(name: str, source: str, **spec: Any) -> dict[str, Any]:
    """A python3.12 Function whose app.py is ``source`` (handler app.handler); ``spec`` adds
    or overrides fields of its spec."""
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": source}}},
            **spec,
        },
    }


# A Function `failures` writing each event it gets (a failure destination's record) to a file
# named by its request id in the folder {letters}: a YAML document to put in a manifest that is
# .format()ed (its own braces doubled), as the queue and Kafka source tests do.
FAILURE_DESTINATION = """---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: failures}}
spec:
  runtime: python3.12
  handler: app.handler
  env: [{{name: LETTERS, value: "{letters}"}}]
  code:
    inline:
      files:
        app.py: |
          import json, os
          def handler(event, context):
              path = os.path.join(os.environ["LETTERS"], context.aws_request_id)
              with open(path + ".tmp", "w") as out:
                  json.dump(event, out)
              os.replace(path + ".tmp", path)
"""
