"""PodAnnouncements without a server: the TokenReview and the pod a fake client answers, one
case per refusal and the accepted announcement."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.arrivals import AnnouncementRefused
from kubelambda.platforms.kubernetes.announcements import ANNOUNCE_AUDIENCE, PodAnnouncements
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import POD, TOKEN_REVIEW, Kind

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-part.signature"
FUNCTION = FunctionKey("team-a", "hello")
POD_NAME = "hello-7d9f-abcde"
UID = "0a1b2c3d-0000-4000-8000-000000000001"
IP = "10.244.0.7"

JSON = dict[str, Any]


def review() -> JSON:
    """What the API server answers for the pod's own bound token (it echoes spec.token)."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": TOKEN, "audiences": [ANNOUNCE_AUDIENCE]},
        "status": {
            "authenticated": True,
            "audiences": [ANNOUNCE_AUDIENCE],
            "user": {
                "username": "system:serviceaccount:team-a:default",
                "uid": "sa-uid",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a"],
                "extra": {
                    "authentication.kubernetes.io/pod-name": [POD_NAME],
                    "authentication.kubernetes.io/pod-uid": [UID],
                    "authentication.kubernetes.io/credential-id": ["JTI=x"],
                },
            },
        },
    }


def pod() -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "team-a",
            "name": POD_NAME,
            "uid": UID,
            "labels": {"kubelambda.dev/function": "hello"},
        },
        "spec": {"serviceAccountName": "default"},
        "status": {"phase": "Pending"},
    }


class FakeClient:
    """Answers the TokenReview and the pod's GET as the case says, and records the calls."""

    def __init__(self, review: JSON | Exception, pod: JSON | Exception | None) -> None:
        self.review, self.pod = review, pod
        self.created: list[JSON] = []
        self.got: list[tuple[Kind, str | None, str]] = []

    def create(self, obj: JSON, *, namespace: str | None = None) -> JSON:
        self.created.append(copy.deepcopy(obj))
        if isinstance(self.review, Exception):
            raise self.review
        return self.review

    def get(self, kind: Kind, *, namespace: str | None, name: str) -> JSON | None:
        self.got.append((kind, namespace, name))
        if isinstance(self.pod, Exception):
            raise self.pod
        return self.pod


async def run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return call(*args, **kwargs)


def edit(document: Callable[[], JSON], change: Callable[[JSON], object]) -> JSON:
    edited = document()
    change(edited)
    return edited


def extra(r: JSON) -> JSON:
    result: JSON = r["status"]["user"]["extra"]
    return result


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("accepted", {}),
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
    ("address-differs", {"source_ip": "10.244.0.8"}, 403, "not the address the announcement"),
    (
        "not-authenticated",
        {
            "review": {
                "status": {"authenticated": False, "error": "token has been invalidated"},
                "spec": {"token": TOKEN},
            }
        },
        401,
        "does not authenticate: token has been invalidated",
    ),
    (
        "audience-missing",
        {"review": edit(review, lambda r: r["status"].update(audiences=["https://kubernetes"]))},
        401,
        "not for the audience kubelambda.dev/announce",
    ),
    (
        "another-namespace",
        {
            "review": edit(
                review,
                lambda r: r["status"]["user"].update(
                    username="system:serviceaccount:team-b:default"
                ),
            )
        },
        401,
        "not a service account's of namespace team-a",
    ),
    (
        "not-a-service-account",
        {"review": edit(review, lambda r: r["status"]["user"].update(username="alice"))},
        401,
        "not a service account's",
    ),
    (
        "bound-to-no-pod",
        {"review": edit(review, lambda r: r["status"]["user"].update(extra={}))},
        401,
        "bound to no pod",
    ),
    (
        "another-pods-token",
        {
            "review": edit(
                review,
                lambda r: extra(r).update({"authentication.kubernetes.io/pod-name": ["other"]}),
            )
        },
        401,
        f"bound to another pod than {POD_NAME}",
    ),
    ("pod-gone", {"pod": None}, 401, f"pod {POD_NAME} does not exist in team-a"),
    (
        "earlier-pod-of-that-name",
        {"pod": edit(pod, lambda p: p["metadata"].update(uid="another-uid"))},
        401,
        "an earlier pod",
    ),
    (
        "another-service-account",
        {"pod": edit(pod, lambda p: p["spec"].update(serviceAccountName="builder"))},
        401,
        "service account",
    ),
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
        "review-failed",
        {"review": ApiError(403, "Forbidden", "cannot create tokenreviews")},
        503,
        "could not verify pod hello-7d9f-abcde: 403 Forbidden",
    ),
    (
        "get-failed",
        {"pod": ApiError(0, "Unreachable", "connection refused")},
        503,
        "could not verify pod hello-7d9f-abcde: 0 Unreachable",
    ),
]


def verify(case: dict[str, Any]) -> FakeClient:
    client = FakeClient(case.get("review", review()), case.get("pod", pod()))
    announcements = PodAnnouncements(client, run=run)  # type: ignore[arg-type]
    asyncio.run(
        announcements.verify(
            token=TOKEN,
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
    [sent] = client.created
    assert (sent["apiVersion"], sent["kind"]) == (TOKEN_REVIEW.api_version, TOKEN_REVIEW.kind)
    assert sent["spec"] == {"token": TOKEN, "audiences": [ANNOUNCE_AUDIENCE]}
    assert client.got == [(POD, "team-a", POD_NAME)]


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
    assert TOKEN not in str(refused.value) and "secret-part" not in str(refused.value)


def test_the_review_and_the_get_run_at_once() -> None:
    # Each call waits until both have started: run one after the other, they would not finish.
    started: list[str] = []
    both = asyncio.Event()

    async def both_at_once(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started.append(call.__name__)
        if len(started) == 2:
            both.set()
        await both.wait()  # within the verifier's own deadline (1.5 s)
        return call(*args, **kwargs)

    announcements = PodAnnouncements(FakeClient(review(), pod()), run=both_at_once)  # type: ignore[arg-type]
    asyncio.run(
        announcements.verify(token=TOKEN, function=FUNCTION, pod=POD_NAME, ip=IP, source_ip=IP)
    )
    assert sorted(started) == ["create", "get"]


def test_an_api_server_that_does_not_answer_in_time_is_a_503() -> None:
    async def never(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    announcements = PodAnnouncements(
        FakeClient(review(), pod()),  # type: ignore[arg-type]
        run=never,
        seconds=0.05,
    )
    with pytest.raises(
        AnnouncementRefused, match=r"did not verify pod .* within 0.05 s"
    ) as refused:
        asyncio.run(
            announcements.verify(token=TOKEN, function=FUNCTION, pod=POD_NAME, ip=IP, source_ip=IP)
        )
    assert refused.value.status == 503


def test_without_a_runner_the_calls_run_on_threads() -> None:
    client = FakeClient(review(), pod())
    announcements = PodAnnouncements(client)  # type: ignore[arg-type]
    asyncio.run(
        announcements.verify(token=TOKEN, function=FUNCTION, pod=POD_NAME, ip=IP, source_ip=IP)
    )
    assert client.got == [(POD, "team-a", POD_NAME)]
