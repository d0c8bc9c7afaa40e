"""PodAnnouncements without a server: the Function's announce Secret and the pod a fake client
answers, one case per refusal and the accepted announcement."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.arrivals import AnnouncementRefused
from kubelambda.platforms.kubernetes.announcements import PodAnnouncements
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import POD, SECRET, Kind

KEY = "kq3R0x_yZ8v1bC2dE4fG6hJ8kL0mN2pQ4rS6tU8wX0A"  # as secrets.token_urlsafe(32) makes one
OTHER_KEY = "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn7Mm6L"  # Function "bye"'s, same namespace
FUNCTION = FunctionKey("team-a", "hello")
POD_NAME = "hello-7d9f-abcde"
IP = "10.244.0.7"

JSON = dict[str, Any]


def secret(*data: tuple[str, str], function: str = "hello") -> JSON:
    """A Function's announce Secret as the API server answers it (data base64-encoded)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": "team-a", "name": f"{function}-announce"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data},
    }


def hello_secret() -> JSON:
    return secret(("key", KEY))


def pod() -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "team-a",
            "name": POD_NAME,
            "uid": "0a1b2c3d-0000-4000-8000-000000000001",
            "labels": {"kubelambda.dev/function": "hello"},
        },
        "spec": {},
        "status": {"phase": "Pending"},
    }


class FakeClient:
    """Answers the GETs of the pod and of the namespace's announce Secrets (Function hello's as
    the case says, and Function bye's) and records them."""

    def __init__(self, hello: JSON | Exception | None, pod: JSON | Exception | None) -> None:
        self.answers: dict[tuple[Kind, str], JSON | Exception | None] = {
            (SECRET, "hello-announce"): hello,
            (SECRET, "bye-announce"): secret(("key", OTHER_KEY), function="bye"),
            (POD, POD_NAME): pod,
        }
        self.got: list[tuple[Kind, str | None, str]] = []

    def get(self, kind: Kind, *, namespace: str | None, name: str) -> JSON | None:
        self.got.append((kind, namespace, name))
        answer = self.answers.get((kind, name))
        if isinstance(answer, Exception):
            raise answer
        return answer


async def run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return call(*args, **kwargs)


def edit(document: Callable[[], JSON], change: Callable[[JSON], object]) -> JSON:
    edited = document()
    change(edited)
    return edited


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("accepted", {}),
    ("accepted-secret-with-more-keys", {"secret": secret(("other", "x"), ("key", KEY))}),
    ("accepted-ipv4-mapped-source", {"source_ip": f"::ffff:{IP}"}),
    ("accepted-ipv4-mapped-body", {"ip": f"::ffff:{IP}", "source_ip": IP}),
    (
        "accepted-address-known",
        {"pod": edit(pod, lambda p: p["status"].update(podIPs=[{"ip": IP}]))},
    ),
]

REFUSED: list[tuple[str, dict[str, Any], int, str]] = [
    ("ip-malformed", {"ip": "10.244.0"}, 400, "ip '10.244.0' is not an IP address"),
    ("pod-name-malformed", {"pod_name": "../secrets/x"}, 400, "is not a pod name"),
    ("namespace-malformed", {"function": FunctionKey("A/b", "hello")}, 400, "not a namespace"),
    (
        "function-name-malformed",
        {"function": FunctionKey("team-a", "x?watch=1")},
        400,
        "'x?watch=1' is not a Function name",
    ),
    ("address-differs", {"source_ip": "10.244.0.8"}, 403, "not the address the announcement"),
    ("wrong-key", {"token": KEY[:-1] + "B"}, 401, "not Function team-a/hello's announce key"),
    ("key-prefix", {"token": KEY[:-1]}, 401, "not Function team-a/hello's announce key"),
    ("key-with-more", {"token": KEY + "x"}, 401, "not Function team-a/hello's announce key"),
    ("no-secret", {"secret": None}, 401, "Secret hello-announce does not exist"),
    ("secret-without-key", {"secret": secret(("other", KEY))}, 401, "has no text at 'key'"),
    ("secret-empty", {"secret": secret()}, 401, "has no text at 'key'"),
    ("secret-key-empty", {"secret": secret(("key", ""))}, 401, "has no text at 'key'"),
    (
        "secret-key-not-base64",
        {"secret": edit(hello_secret, lambda s: s["data"].update(key="%%%"))},
        401,
        "has no text at 'key'",
    ),
    # The key of Function bye's Secret, sent for hello (its pod named, from its address): the
    # verifier reads hello's Secret, whatever the caller knows.
    ("another-functions-key", {"token": OTHER_KEY}, 401, "not Function team-a/hello's"),
    # And a wrong key says nothing about the pod, even one that does not exist.
    ("wrong-key-no-pod", {"token": OTHER_KEY, "pod": None}, 401, "announce key"),
    ("pod-gone", {"pod": None}, 403, f"pod {POD_NAME} does not exist in team-a"),
    (
        "pod-deleting",
        {
            "pod": edit(
                pod, lambda p: p["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z")
            )
        },
        403,
        "is being deleted",
    ),
    (
        "pod-without-label",
        {"pod": edit(pod, lambda p: p["metadata"].update(labels={}))},
        403,
        "is not Function team-a/hello's (kubelambda.dev/function=)",
    ),
    (
        "another-functions-pod",
        {"pod": edit(pod, lambda p: p["metadata"].update(labels={"kubelambda.dev/function": "x"}))},
        403,
        "kubelambda.dev/function=x",
    ),
    (
        "pod-known-at-another-address",
        {"pod": edit(pod, lambda p: p["status"].update(podIPs=[{"ip": "10.244.0.9"}]))},
        403,
        f"ip {IP} is not pod {POD_NAME}'s (10.244.0.9)",
    ),
    (
        "secret-get-failed",
        {"secret": ApiError(403, "Forbidden", "cannot get secrets")},
        503,
        "could not verify pod hello-7d9f-abcde: 403 Forbidden",
    ),
    (
        "pod-get-failed",
        {"pod": ApiError(0, "Unreachable", "connection refused")},
        503,
        "could not verify pod hello-7d9f-abcde: 0 Unreachable",
    ),
]


def verify(case: dict[str, Any]) -> FakeClient:
    client = FakeClient(case.get("secret", hello_secret()), case.get("pod", pod()))
    announcements = PodAnnouncements(client, run=run)  # type: ignore[arg-type]
    asyncio.run(
        announcements.verify(
            token=case.get("token", KEY),
            function=case.get("function", FUNCTION),
            pod=case.get("pod_name", POD_NAME),
            ip=case.get("ip", IP),
            source_ip=case.get("source_ip", IP),
        )
    )
    return client


@pytest.mark.parametrize("case", [c for _, c in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_an_announcement_that_holds_is_accepted(case: dict[str, Any]) -> None:
    client = verify(case)
    assert sorted(client.got, key=str) == [
        (POD, "team-a", POD_NAME),
        (SECRET, "team-a", "hello-announce"),
    ]


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [(c, s, m) for _, c, s, m in REFUSED],
    ids=[n for n, *_ in REFUSED],
)
def test_an_announcement_that_does_not_hold_is_refused(
    case: dict[str, Any], status: int, message: str
) -> None:
    with pytest.raises(AnnouncementRefused) as refused:
        verify(case)
    assert refused.value.status == status
    assert message in refused.value.message
    # Neither the key sent nor the one kept is quoted.
    sent = case.get("token", KEY)
    assert sent not in str(refused.value) and KEY not in str(refused.value)
    assert KEY[:8] not in str(refused.value) and sent[:8] not in str(refused.value)


def test_the_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(
        "kubelambda.platforms.kubernetes.announcements.hmac.compare_digest", compare_digest
    )
    verify({})
    assert compared == [(KEY.encode(), KEY.encode())]


def test_the_two_gets_run_at_once() -> None:
    # Each call waits until both have started: run one after the other, they would not finish.
    started: list[str] = []
    both = asyncio.Event()

    async def both_at_once(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started.append(call.__name__)  # a GET of the Secret, a GET of the pod
        if len(started) == 2:
            both.set()
        await both.wait()  # within the verifier's own deadline (1.5 s)
        return call(*args, **kwargs)

    announcements = PodAnnouncements(FakeClient(hello_secret(), pod()), run=both_at_once)  # type: ignore[arg-type]
    asyncio.run(
        announcements.verify(token=KEY, function=FUNCTION, pod=POD_NAME, ip=IP, source_ip=IP)
    )
    assert started == ["get", "get"]


def test_an_api_server_that_does_not_answer_in_time_is_a_503() -> None:
    async def never(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    announcements = PodAnnouncements(
        FakeClient(hello_secret(), pod()),  # type: ignore[arg-type]
        run=never,
        seconds=0.05,
    )
    with pytest.raises(
        AnnouncementRefused, match=r"did not verify pod .* within 0.05 s"
    ) as refused:
        asyncio.run(
            announcements.verify(token=KEY, function=FUNCTION, pod=POD_NAME, ip=IP, source_ip=IP)
        )
    assert refused.value.status == 503


def test_without_a_runner_the_calls_run_on_threads() -> None:
    client = FakeClient(hello_secret(), pod())
    announcements = PodAnnouncements(client)  # type: ignore[arg-type]
    asyncio.run(
        announcements.verify(token=KEY, function=FUNCTION, pod=POD_NAME, ip=IP, source_ip=IP)
    )
    assert len(client.got) == 2
