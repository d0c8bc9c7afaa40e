"""The routing table built from Function and Trigger manifests, as local mode and the watcher do."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubelambda.api import parse_function, parse_trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryPolicy
from kubelambda.gateway.exceptions import FunctionNotFound
from kubelambda.gateway.routing import JwtAuthorizerConfig, routing_table

MANIFESTS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: hello}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: "def handler(e, c): return e"}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: worker, namespace: team-a}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: "def handler(e, c): return e"}}}
  timeoutSeconds: 30
  delivery: {retries: 1, backoffSeconds: 5, deadLetter: {function: failures}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: hello-http}
spec: {function: hello, http: {path: /hello}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: api, namespace: team-a}
spec:
  function: worker
  http:
    path: /api
    methods: [GET, POST]
    host: api.example.com
    auth: {type: apiKey, secretRef: {name: api-keys, key: worker}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: photos, namespace: team-a}
spec:
  function: worker
  bucket: {bucket: photos, prefix: uploads/, suffix: .jpg}
  delivery: {retries: 0, backoffSeconds: 1, deadLetter: {url: "http://hooks.example.com/x"}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: orphan}
spec: {function: missing, http: {path: /orphan}}
"""


def load(secrets: Any = None) -> Any:
    objects = list(yaml.safe_load_all(MANIFESTS))
    functions = [parse_function(o) for o in objects if o["kind"] == "Function"]
    triggers = [parse_trigger(o) for o in objects if o["kind"] == "Trigger"]
    return routing_table(functions, triggers, secrets=secrets)


def test_functions_carry_timeout_and_delivery() -> None:
    table = load()
    hello = table.function(FunctionKey("default", "hello"))
    assert hello.timeout_seconds == 3.0  # Lambda's default
    # Lambda's defaults: two retries, six hours' maximum event age
    assert hello.delivery == DeliveryPolicy(
        retries=2, backoff_seconds=60.0, max_event_age_seconds=21600.0
    )
    worker = table.resolve("team-a.worker")
    assert worker.timeout_seconds == 30.0
    # a dead-letter Function is named in the Function's own namespace
    assert worker.delivery == DeliveryPolicy(
        retries=1,
        backoff_seconds=5.0,
        dead_letter_function=FunctionKey("team-a", "failures"),
        max_event_age_seconds=21600.0,
    )


def test_http_triggers_become_routes() -> None:
    table = load(secrets=lambda namespace, name, key: f"{namespace}/{name}/{key}")
    match = table.match(method="GET", path="/hello/x", host="localhost:8080")
    assert (match.function.key, match.route_key) == (FunctionKey("default", "hello"), "ANY /hello")
    assert match.route.api_keys is None
    api = table.match(method="POST", path="/api/v1", host="api.example.com")
    assert api.function.key == FunctionKey("team-a", "worker")
    assert api.route_key == "POST /api"
    assert api.route.trigger == "team-a/api"
    assert api.route.api_keys == frozenset({"team-a/api-keys/worker"})


def test_unreadable_api_key_fails_closed() -> None:
    table = load(secrets=lambda namespace, name, key: None)
    api = table.match(method="GET", path="/api", host="api.example.com")
    assert api.route.api_keys == frozenset()
    assert (
        load().match(method="GET", path="/api", host="api.example.com").route.api_keys
        == frozenset()
    )


def test_bucket_triggers_are_kept_for_the_notification_endpoint() -> None:
    (photos,) = load().buckets
    assert photos.function == FunctionKey("team-a", "worker")
    assert (photos.bucket, photos.prefix, photos.suffix) == ("photos", "uploads/", ".jpg")
    assert photos.events == ("s3:ObjectCreated:*",)
    assert photos.delivery == DeliveryPolicy(
        retries=0,
        backoff_seconds=1.0,
        dead_letter_url="http://hooks.example.com/x",
        max_event_age_seconds=21600.0,
    )


def test_trigger_of_a_missing_function_answers_not_found() -> None:
    with pytest.raises(FunctionNotFound, match="default/missing, which does not exist"):
        load().match(method="GET", path="/orphan", host=None)


def test_jwt_triggers_carry_their_authorizer() -> None:
    manifest = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "function": "orders",
            "http": {
                "path": "/orders",
                "auth": {
                    "type": "jwt",
                    "jwt": {
                        "issuer": "https://issuer.example.com",
                        "audience": ["orders-api", "admin"],
                        "scopes": ["orders:read"],
                    },
                },
            },
        },
    }
    table = routing_table([], [parse_trigger(manifest)])
    (route,) = table.routes
    assert route.api_keys is None
    assert route.jwt == JwtAuthorizerConfig(
        issuer="https://issuer.example.com",
        audience=frozenset({"orders-api", "admin"}),
        jwks_url=None,
        scopes=frozenset({"orders:read"}),
        identity_source="$request.header.Authorization",
    )
    assert all(r.jwt is None for r in load().routes)
