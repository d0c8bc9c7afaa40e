"""Fixtures for the controller's unit tests: a configuration, a fixed clock and manifests.

Reconciles run against FakeCluster with ``asyncio.run``; nothing here opens a socket.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.meta import Owner

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RUNTIME_IMAGE = "localhost/kubelambda-runtime:0.1.0"
APP = 'def handler(event, context):\n    return {"hello": event.get("name", "world")}\n'

HELLO: dict[str, Any] = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "hello", "namespace": "team-a", "uid": "uid-hello", "generation": 1},
    "spec": {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": APP}}},
    },
}


@pytest.fixture
def config() -> ControllerConfig:
    return ControllerConfig(
        runtime_images=MappingProxyType({"python3.12": RUNTIME_IMAGE}),
        gateway_url="http://gateway.kubelambda.svc",
        gateway_namespace="kubelambda",
        region="eu-west-1",
        account_id="123456789012",
    )


@pytest.fixture
def owner() -> Owner:
    return Owner(name="hello", namespace="team-a", uid="uid-hello")


@pytest.fixture
def make_function() -> Callable[..., dict[str, Any]]:
    """A Function manifest: HELLO with ``spec`` keys replaced (None removes a key)."""

    def make(name: str = "hello", **spec: Any) -> dict[str, Any]:
        manifest = copy.deepcopy(HELLO)
        manifest["metadata"]["name"] = name
        manifest["metadata"]["uid"] = f"uid-{name}"
        for key, value in spec.items():
            if value is None:
                manifest["spec"].pop(key, None)
            else:
                manifest["spec"][key] = value
        parse_function(manifest)  # the tests build only valid Functions unless they say so
        return manifest

    return make


def clock() -> datetime:
    return NOW
