"""The gateway as the control-plane image ships it: its request path compiled by mypyc
(setup.py, KUBELAMBDA_COMPILE=1). Every other test imports the sources as they are; here the
gateway's unit tests run again against the compiled build, where a value of the wrong type is
a TypeError (httptools' stubs say a URL's query is bytes; without one it is None, and every
request without a query was answered 400 until connection.py said so)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.compiled import compiled_site

ROOT = Path(__file__).resolve().parents[3]


def test_the_gateways_unit_tests_pass_against_its_compiled_build() -> None:
    site = compiled_site()  # built on first use, about a minute; cached per source tag
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "runtime"), str(ROOT / "tests")]),
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import kubelambda.gateway.connection as m; print(m.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().endswith(".so"), f"not the compiled build: {probe.stdout}"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "tests/unit/gateway",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, f"compiled, the gateway's unit tests fail:\n{run.stdout[-6000:]}"
