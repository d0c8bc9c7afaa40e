"""`kubelambda sam convert` output applied with kubectl to a real API server loaded with the
repository's CRDs: examples/sam and the shop template (every event type, a JWT route, a Lambda
name annotation) are accepted as written, and read back as written (plus the CRDs' defaults)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.apiserver import ApiServer
from integration.controller.operating import get

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = {
    "example": (ROOT / "examples" / "sam" / "template.yaml", ()),
    "shop": (
        ROOT / "tests" / "unit" / "api" / "sam" / "templates" / "shop" / "template.yaml",
        ("--stack-name", "shop", "--parameter-overrides", "Stage=prod"),
    ),
}


def contains(actual: object, expected: object) -> bool:
    """Whether ``actual`` holds everything ``expected`` does (the server adds defaults)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(contains(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return actual == expected


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_converted_manifests_apply_as_they_are(
    kube_api: ApiServer, crds: None, namespace: str, tmp_path: Path, template: str
) -> None:
    path, options = TEMPLATES[template]
    out = tmp_path / "manifests"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "sam",
            "convert",
            str(path),
            "-o",
            str(out),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode in (0, 3), done.stderr  # 3: the shop lists what it does not map
    written = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]
    assert len(written) >= 5
    # Client-side apply, as `kubectl apply -f DIR` and most GitOps tools do.
    kube_api.kubectl("apply", "-n", namespace, "-f", str(out))
    for obj in written:
        kind = "fn" if obj["kind"] == "Function" else "trig"
        stored: dict[str, Any] | None = get(kube_api, kind, obj["metadata"]["name"], namespace)
        assert stored is not None
        assert contains(stored["spec"], obj["spec"]), (stored["spec"], obj["spec"])
        assert contains(stored["metadata"], {"annotations": obj["metadata"].get("annotations", {})})
    # Both templates name a function OrderHandler: its Function keeps that name for the Invoke API.
    order_handler = get(kube_api, "fn", "order-handler", namespace)
    assert order_handler is not None
    assert (
        order_handler["metadata"]["annotations"]["kubelambda.dev/function-name"] == "OrderHandler"
    )
