"""platforms/kubernetes/access_keys.py: access keys read from Secrets, as the gateway's watch
delivers them, and what each may invoke."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.platforms.kubernetes.access_keys import SecretAccessKeys, access_key_of


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "kubelambda", "name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


KEYS = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cret"}


@pytest.mark.parametrize(
    ("functions", "allowed", "refused"),
    [
        ("team-a/*", [("team-a", "x"), ("team-a", "y")], [("team-b", "x")]),
        ("team-a/hello, team-b/*", [("team-a", "hello"), ("team-b", "z")], [("team-a", "x")]),
        ("*/*", [("any", "thing")], []),
        ("team-a/hello\nteam-c/report-*", [("team-c", "report-1")], [("team-c", "other")]),
        ("", [], [("team-a", "x")]),
    ],
)
def test_a_key_may_invoke_what_its_patterns_name(
    functions: str, allowed: list[tuple[str, str]], refused: list[tuple[str, str]]
) -> None:
    key = access_key_of(secret("k", **KEYS, functions=functions))
    assert key is not None
    assert (key.id, key.secret) == ("AKIA1", "s3cret")
    assert all(key.allows(FunctionKey(*name)) for name in allowed)
    assert not any(key.allows(FunctionKey(*name)) for name in refused)


def test_an_incomplete_secret_holds_no_key() -> None:
    assert access_key_of(secret("k", AWS_ACCESS_KEY_ID="AKIA1", functions="*/*")) is None
    broken = secret("k", **KEYS)
    broken["data"]["AWS_SECRET_ACCESS_KEY"] = "%%% not base64"
    assert access_key_of(broken) is None


def test_keys_follow_their_secrets() -> None:
    keys = SecretAccessKeys()
    keys.secret_event("ADDED", secret("ci", **KEYS, functions="*/*"))
    assert keys("AKIA1") is not None
    rotated = {"AWS_ACCESS_KEY_ID": "AKIA2", "AWS_SECRET_ACCESS_KEY": "new"}
    keys.secret_event("MODIFIED", secret("ci", **rotated, functions="*/*"))
    assert keys("AKIA1") is None
    assert keys("AKIA2") is not None
    keys.secret_event("DELETED", {"metadata": {"namespace": "kubelambda", "name": "ci"}})
    assert keys("AKIA2") is None
