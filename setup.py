"""The gateway's request path compiled to C with mypyc, when KUBELAMBDA_COMPILE=1 is set at
install time (the control-plane image's build sets it; needs mypy and a C compiler): the same
typed Python, some 40% fewer instructions per proxied request and two thirds of the CPU
(benchmarks/gateway_instructions.py; --interpreted measures the other form). Without it,
everything installs as plain Python, as `pip install -e .` does for development. All else is
in pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import setup

# The modules every proxied request runs through, compiled together.
COMPILED = ["operator/kubelambda/clock.py"] + [
    f"operator/kubelambda/gateway/{name}.py"
    for name in (
        "activation",
        "boundedserver",
        "connection",
        "current",
        "edge",
        "exchange",
        "framing",
        "functionstate",
        "http",
        "ids",
        "invocation",
        "lease",
        "limits",
        "metrics",
        "overload",
        "refusals",
        "sources/http",
        "sources/http_event",
        "sources/http_payload",
        "sources/invoke_api",
        "stalls",
        "tracing",
        "upstream",
        "upstreamconnection",
        "waking",
    )
]


def _ext_modules() -> list[object]:
    if os.environ.get("KUBELAMBDA_COMPILE") != "1":
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3"))


if __name__ == "__main__":  # as setuptools runs it; the image build reads COMPILED too
    setup(ext_modules=_ext_modules())
