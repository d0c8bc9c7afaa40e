"""``kubelambda local`` refuses what it cannot serve, naming the file and the field."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: {name}}}
spec:
  runtime: python3.12
  handler: app.handler
  {extra}
"""

INLINE = "code: {inline: {files: {app.py: 'def handler(e, c): return 1'}}}"


@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        ("too-small", INLINE + "\n  memoryMB: 64", "spec.memoryMB"),
        ("slow", INLINE + "\n  timeoutSeconds: 901", "spec.timeoutSeconds"),
        ("no-code", "", "spec.code"),
        ("from-cm", "code: {configMapRef: {name: x}}", "spec.code.configMapRef"),
        (
            "secret-env",
            INLINE + "\n  env: [{name: T, valueFrom: {secretKeyRef: {name: s, key: k}}}]",
            "spec.env[0].valueFrom",
        ),
        ("Bad_Name", INLINE, "metadata.name"),
    ],
)
def test_bad_manifests_are_refused_naming_file_and_field(tmp_path, name, extra, expected):
    path = tmp_path / "functions.yaml"
    path.write_text(textwrap.dedent(FUNCTION.format(name=name, extra=extra)))
    done = subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", "local", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr
    if name != "from-cm" and name != "secret-env":  # these two name the Function instead
        assert "functions.yaml" in done.stderr
    assert "Traceback" not in done.stderr
