"""parse_trigger: the valid examples become fully defaulted Triggers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubelambda.api import (
    BucketSource,
    DeadLetter,
    Delivery,
    HttpAuth,
    HttpSource,
    S3Source,
    SecretKeyRef,
    SpecError,
    Trigger,
    parse_trigger,
)
from kubelambda.api.trigger import JwtAuth

HERE = Path(__file__).parent
VALID = {
    doc["metadata"]["name"]: doc
    for doc in yaml.safe_load_all((HERE / "valid.yaml").read_text())
    if doc["kind"] == "Trigger"
}

EXPECTED = {
    "hello-http": Trigger(
        name="hello-http",
        namespace="default",
        function="hello",
        source=HttpSource(path="/hello", methods=("ANY",), host=None, auth=HttpAuth("none")),
        delivery=None,
    ),
    "api.v1": Trigger(
        name="api.v1",
        namespace="team-a",
        function="everything",
        source=HttpSource(
            path="/api/v1/.well-known/",
            methods=("GET", "POST"),
            host="api.example.com",
            auth=HttpAuth("apiKey", SecretKeyRef("api-keys", "everything")),
        ),
        delivery=None,
    ),
    "root": Trigger(
        name="root",
        namespace="default",
        function="hello",
        source=HttpSource(path="/"),
        delivery=None,
    ),
    "photos": Trigger(
        name="photos",
        namespace="default",
        function="hello",
        source=BucketSource(
            bucket="photos", events=("s3:ObjectCreated:*",), prefix="", suffix="", source=None
        ),
        delivery=None,
    ),
    "thumbnails": Trigger(
        name="thumbnails",
        namespace="default",
        function="hello",
        source=BucketSource(
            bucket="my.photos-2024",
            events=("s3:ObjectCreated:Put", "s3:ObjectRemoved:*"),
            prefix="uploads/",
            suffix=".jpg",
            source=S3Source(
                endpoint="http://minio.storage:9000",
                credentials_secret="minio-credentials",
                region="us-east-1",
            ),
        ),
        # Set on the Trigger, so it replaces the Function's; backoff takes its default.
        delivery=Delivery(
            retries=1,
            backoff_seconds=60,
            dead_letter=DeadLetter(url="http://dlq.default.svc:8080/events"),
        ),
    ),
}


def test_every_valid_trigger_has_an_expectation() -> None:
    assert set(VALID) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_valid_trigger_parses_with_defaults(name: str) -> None:
    assert parse_trigger(VALID[name]) == EXPECTED[name]


@pytest.mark.parametrize(
    ("methods", "method", "allowed"),
    [(("ANY",), "PATCH", True), (("GET", "POST"), "post", True), (("GET",), "DELETE", False)],
)
def test_http_source_allows_its_methods(
    methods: tuple[str, ...], method: str, allowed: bool
) -> None:
    assert HttpSource(path="/", methods=methods).allows(method) is allowed


def test_all_problems_are_reported_together() -> None:
    obj = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": {"http": {"path": "nope", "methods": ["ANY", "GET"]}, "delivery": {}},
    }
    with pytest.raises(SpecError) as caught:
        parse_trigger(obj)
    assert set(caught.value.paths) == {
        "spec.function",
        "spec.http.path",
        "spec.http.methods",
        "spec.delivery",
    }


def jwt_trigger(auth: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"function": "orders", "http": {"path": "/orders", "auth": auth}},
    }


@pytest.mark.parametrize(
    ("jwt", "expected"),
    [
        (
            {"issuer": "https://issuer.example.com", "audience": ["orders-api"]},
            JwtAuth(issuer="https://issuer.example.com", audience=("orders-api",)),
        ),
        (
            {
                "issuer": "http://127.0.0.1:8443/realm",
                "audience": ["a", "b"],
                "jwksUrl": "http://127.0.0.1:8443/keys",
                "scopes": ["orders:read", "orders:write"],
                "identitySource": "$request.querystring.access_token",
            },
            JwtAuth(
                issuer="http://127.0.0.1:8443/realm",
                audience=("a", "b"),
                jwks_url="http://127.0.0.1:8443/keys",
                scopes=("orders:read", "orders:write"),
                identity_source="$request.querystring.access_token",
            ),
        ),
    ],
    ids=["defaults", "everything-set"],
)
def test_jwt_auth_parses_with_defaults(jwt: dict[str, object], expected: JwtAuth) -> None:
    trigger = parse_trigger(jwt_trigger({"type": "jwt", "jwt": jwt}))
    assert isinstance(trigger.source, HttpSource)
    assert trigger.source.auth == HttpAuth("jwt", jwt=expected)


def test_jwt_auth_reports_every_problem_of_its_block() -> None:
    obj = jwt_trigger(
        {
            "type": "jwt",
            "jwt": {"audience": [], "identitySource": "Authorization", "extra": 1},
        }
    )
    with pytest.raises(SpecError) as caught:
        parse_trigger(obj)
    assert set(caught.value.paths) == {
        "spec.http.auth.jwt.issuer",
        "spec.http.auth.jwt.audience",
        "spec.http.auth.jwt.identitySource",
        "spec.http.auth.jwt.extra",
    }
