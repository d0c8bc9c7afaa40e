"""kube/client.py without a server: API errors keep the server's reason and message, watch
lines become events, and ERROR events raise (410 means list again)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelambda.platforms.kubernetes.client import _from_exception, _watch_event
from kubelambda.platforms.kubernetes.errors import ApiError, Conflict, NotFound


class FakeException:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = "Reason"
        self.body = body


def test_a_status_body_gives_reason_and_message() -> None:
    body = json.dumps(
        {"kind": "Status", "reason": "Invalid", "message": 'Deployment "x" is invalid'}
    )
    error = _from_exception("PATCH", "/apis/apps/v1/x", FakeException(422, body))
    assert (error.status, error.reason, error.message) == (
        422,
        "Invalid",
        'Deployment "x" is invalid',
    )
    assert not error.transient


@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [(404, NotFound, False), (409, Conflict, True), (503, ApiError, True), (403, ApiError, False)],
)
def test_statuses_map_to_classes(status: int, cls: type[ApiError], transient: bool) -> None:
    error = _from_exception("GET", "/p", FakeException(status, None))
    assert type(error) is cls
    assert error.transient is transient


def test_watch_lines() -> None:
    event = _watch_event({"type": "ADDED", "object": {"metadata": {"name": "a"}}})
    assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "a")
    with pytest.raises(ApiError) as caught:
        _watch_event(
            {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}
        )
    assert caught.value.status == 410
    with pytest.raises(ApiError, match="not a watch event"):
        _watch_event({"type": "ADDED"})


def test_the_connection_for_kopf_carries_a_service_account_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kubernetes import client as k8s
    from kubernetes.config.incluster_config import InClusterConfigLoader

    from kubelambda.platforms.kubernetes.client import KubeClient

    token = tmp_path / "token"
    token.write_text("sa-token-123")
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here")
    configuration = k8s.Configuration()
    InClusterConfigLoader(
        token_filename=str(token),
        cert_filename=str(ca),
        environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
    ).load_and_set(client_configuration=configuration)
    connection = KubeClient(k8s.ApiClient(configuration)).connection()
    assert connection.token == "sa-token-123"
    assert connection.server == "https://10.0.0.1:443"
