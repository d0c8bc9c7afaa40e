"""HTTP Trigger auth blocks the real API server takes (tests/unit/api/refused.yaml has the ones
it refuses): it fills in the same defaults as the models, so both read a Trigger alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.apiserver import ApiServer
from kubelambda.api import parse_trigger

JWT: dict[str, Any] = {
    "issuer": "https://issuer.example.com",
    "audience": ["orders-api", "admin-api"],
}


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "jwt", "jwt": JWT},
        {
            "type": "jwt",
            "jwt": {
                **JWT,
                "jwksUrl": "http://127.0.0.1:8443/keys",
                "scopes": ["orders:read", "orders/write"],
                "identitySource": "$request.querystring.access_token",
            },
        },
        {"type": "apiKey", "secretRef": {"name": "keys", "key": "orders"}},
        {},
    ],
    ids=["jwt-defaults", "jwt-everything", "apiKey", "none"],
)
def test_accepted_and_defaulted_as_the_models_do(
    kube_api: ApiServer, crds: None, auth: dict[str, Any]
) -> None:
    manifest = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": "default"},
        "spec": {"function": "orders", "http": {"path": "/orders", "auth": auth}},
    }
    applied = kube_api.kubectl(
        "apply",
        "-n",
        "default",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
    )
    stored = json.loads(applied.stdout)
    if auth.get("type") == "jwt":
        defaulted = stored["spec"]["http"]["auth"]["jwt"]
        expected = auth["jwt"].get("identitySource", "$request.header.Authorization")
        assert defaulted["identitySource"] == expected
    assert parse_trigger(stored).source == parse_trigger(manifest).source
