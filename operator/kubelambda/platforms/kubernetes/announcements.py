"""Verifies a starting pod's announcement ("I am pod P of Function F, serving at IP") with the
API server: a TokenReview of the pod's bound token and a GET of the pod, run at once.

The autoscaler's wake endpoint (autoscaler/service.py, ``POST /announce/NAMESPACE/NAME``)
calls ``PodAnnouncements.verify`` as its ``VerifyAnnouncement``; ``kubelambda operator``
builds it. It sits on a cold start's critical path, so the two calls run concurrently and the
whole verification has a deadline well inside the runtime's 2 s bound on the exchange.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import FUNCTION_LABEL
from kubelambda.autoscaler.arrivals import AnnouncementRefused
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import POD, TOKEN_REVIEW

__all__ = ["ANNOUNCE_AUDIENCE", "VERIFY_SECONDS", "AnnouncementRefused", "PodAnnouncements"]

# The audience of the projected token in a Function's pod: the API server itself refuses a
# token of this audience, so a leaked one proves "I am this pod" to the operator and no more.
ANNOUNCE_AUDIENCE: Final = "kubelambda.dev/announce"
# Within the runtime's 2 s bound on the whole exchange, with room for the answer.
VERIFY_SECONDS: Final = 1.5
# What the API server adds to the user of a token bound to a pod (TokenRequest boundObjectRef).
POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA: Final = "authentication.kubernetes.io/pod-uid"
_SERVICE_ACCOUNT: Final = "system:serviceaccount:"
# Names go into a URL path: anything but a DNS subdomain (or label) is refused before that.
_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Runs a blocking KubeClient call off the event loop (as replicas.DeploymentReplicas takes it).
Run = Callable[..., Awaitable[Any]]
T = TypeVar("T")


class PodAnnouncements:
    """The cluster's ``VerifyAnnouncement``: a pod may announce itself for its own Function only,
    from its own address, while it lives."""

    def __init__(
        self, client: KubeClient, *, run: Run | None = None, seconds: float = VERIFY_SECONDS
    ) -> None:
        """``run`` runs the blocking calls off the loop (the autoscaler's pool); by default, on
        the loop's default executor."""
        self._client = client
        self._run: Run = run if run is not None else asyncio.to_thread
        self._seconds = seconds

    async def verify(
        self, *, token: str, function: FunctionKey, pod: str, ip: str, source_ip: str
    ) -> None:
        """Returns when the announcement holds; raises ``AnnouncementRefused`` with 400 (a
        malformed name or address), 401 (the token is not that live pod's), 403 (the pod is
        not the Function's, is leaving, or the address is not the connection's) or 503 (the
        API server did not answer in time, or with an error)."""
        _check_names(function, pod)
        address = _address(ip, status=400, what=f"ip {ip!r}")
        source = _address(source_ip, status=403, what=f"the connection's address {source_ip!r}")
        if address != source:
            raise AnnouncementRefused(
                403, f"ip {ip} is not the address the announcement came from ({source_ip})"
            )
        try:
            async with asyncio.timeout(self._seconds):
                reviewed, got = await asyncio.gather(
                    self._run(self._client.create, _token_review(token)),
                    self._run(self._client.get, POD, namespace=function.namespace, name=pod),
                    return_exceptions=True,  # both awaited: a second failure is not left unseen
                )
        except TimeoutError:
            raise AnnouncementRefused(
                503, f"the API server did not verify pod {pod} within {self._seconds:g} s"
            ) from None
        review: JSON = _answer(reviewed, pod=pod)
        found: JSON | None = _answer(got, pod=pod)
        account, uid = _reviewed(review, function=function, pod=pod)
        _check_pod(found, function=function, pod=pod, account=account, uid=uid, address=address)


def _answer(answer: T | BaseException, *, pod: str) -> T:
    if isinstance(answer, ApiError):
        # It names the call and the status; neither the review nor the token.
        raise AnnouncementRefused(
            503, f"the API server could not verify pod {pod}: {answer.status} {answer.reason}"
        ) from None
    if isinstance(answer, BaseException):
        raise answer
    return answer


def _token_review(token: str) -> JSON:
    return {
        "apiVersion": TOKEN_REVIEW.api_version,
        "kind": TOKEN_REVIEW.kind,
        "metadata": {},
        "spec": {"token": token, "audiences": [ANNOUNCE_AUDIENCE]},
    }


def _reviewed(review: Mapping[str, Any], *, function: FunctionKey, pod: str) -> tuple[str, str]:
    """The service account and the pod uid the reviewed token names, when it is ``pod``'s
    token for our audience in the Function's namespace; 401 otherwise. The answer echoes the
    token (spec.token), so only its status is read, and none of it is quoted."""
    status = review.get("status") or {}
    if status.get("authenticated") is not True:
        error = str(status.get("error") or "no reason given")[:200]
        raise AnnouncementRefused(401, f"the token does not authenticate: {error}")
    if ANNOUNCE_AUDIENCE not in (status.get("audiences") or []):
        raise AnnouncementRefused(401, f"the token is not for the audience {ANNOUNCE_AUDIENCE}")
    user = status.get("user") or {}
    prefix = f"{_SERVICE_ACCOUNT}{function.namespace}:"
    username = str(user.get("username") or "")
    account = username.removeprefix(prefix)
    if not username.startswith(prefix) or not account or ":" in account:
        raise AnnouncementRefused(
            401, f"the token is not a service account's of namespace {function.namespace}"
        )
    extra = user.get("extra") or {}
    names, uids = extra.get(POD_NAME_EXTRA), extra.get(POD_UID_EXTRA)
    if not names or not uids:
        raise AnnouncementRefused(401, "the token is bound to no pod")
    if names != [pod] or len(uids) != 1:
        raise AnnouncementRefused(401, f"the token is bound to another pod than {pod}")
    return account, str(uids[0])


def _check_pod(
    found: Mapping[str, Any] | None,
    *,
    function: FunctionKey,
    pod: str,
    account: str,
    uid: str,
    address: Address,
) -> None:
    """``found`` is the live pod the token is bound to (401 otherwise), of ``function``, not
    leaving, and not known at another address (403 otherwise)."""
    if found is None:
        raise AnnouncementRefused(401, f"pod {pod} does not exist in {function.namespace}")
    meta = found.get("metadata") or {}
    spec = found.get("spec") or {}
    if str(meta.get("uid") or "") != uid:
        raise AnnouncementRefused(401, f"the token is bound to an earlier pod named {pod}")
    # The TokenRequest API binds a pod's tokens to its own service account; checked again as
    # it costs nothing.
    if str(spec.get("serviceAccountName") or "default") != account:
        raise AnnouncementRefused(401, f"the token is not pod {pod}'s service account's")
    if meta.get("deletionTimestamp"):
        # Its tokens still authenticate for a minute: a leaving pod must not take requests.
        raise AnnouncementRefused(403, f"pod {pod} is being deleted")
    label = (meta.get("labels") or {}).get(FUNCTION_LABEL)
    if label != function.name:
        raise AnnouncementRefused(
            403, f"pod {pod} is not Function {function}'s ({FUNCTION_LABEL}={label or ''})"
        )
    # The kubelet may not have reported the pod's addresses yet (that is why pods announce);
    # once it has, the announced one must be among them.
    known = [str(e["ip"]) for e in (found.get("status") or {}).get("podIPs") or [] if e.get("ip")]
    if known and address not in {_address(str(ip), status=403, what="podIP") for ip in known}:
        raise AnnouncementRefused(403, f"ip {address} is not pod {pod}'s ({', '.join(known)})")


def _check_names(function: FunctionKey, pod: str) -> None:
    if len(function.namespace) > 63 or not _LABEL.fullmatch(function.namespace):
        raise AnnouncementRefused(400, f"{function.namespace!r} is not a namespace name")
    if len(pod) > 253 or not _SUBDOMAIN.fullmatch(pod):
        raise AnnouncementRefused(400, f"{pod!r} is not a pod name")


def _address(text: str, *, status: int, what: str) -> Address:
    """The address, an IPv4-mapped IPv6 one (``::ffff:10.0.0.5``) as the IPv4 it maps."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise AnnouncementRefused(status, f"{what} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
