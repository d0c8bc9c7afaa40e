"""Verifies a starting pod's announcement ("I am pod P of Function F, serving at IP") with the
API server: a GET of the Function's announce Secret and a GET of the pod, run at once.

The autoscaler's wake endpoint (autoscaler/service.py, ``POST /announce/NAMESPACE/NAME``)
calls ``PodAnnouncements.verify`` as its ``VerifyAnnouncement``; ``kubelambda operator``
builds it. It sits on a cold start's critical path, so the two calls run concurrently and the
whole verification has a deadline well inside the runtime's 2 s bound on the exchange.

What the bearer key proves: each Function has a Secret ``<function>-announce`` (key ``key``,
random, created once by the controller and owned by the Function) that its pods get as env
``KUBELAMBDA_ANNOUNCE_KEY``. Knowing it proves "a pod of this Function, or someone who may
read this Function's Secrets"; unlike the bound service-account token it replaced (a projected
volume, which costs every pod the kubelet's wait for volumes, about 300 ms), it names no pod
and does not expire. Each Function has a key of its own, so a Function's pods cannot announce
for another Function. What the key does not prove, the pod checks still do: the pod named
exists, carries the Function's label, is not being deleted, and the announced address is the
connection's and, once the kubelet reported one, the pod's. So the most a holder of the key
can do, while a pod of this Function starts and before the kubelet reports its address, is
have this Function's wake-ups sent to the address it announces from (for 10 s): what the
Function's own code could do anyway, and nothing for another Function.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import ANNOUNCE_KEY, FUNCTION_LABEL, announce_secret_name
from kubelambda.autoscaler.arrivals import AnnouncementRefused
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import POD, SECRET
from kubelambda.platforms.kubernetes.secrets import secret_text

__all__ = ["VERIFY_SECONDS", "AnnouncementRefused", "PodAnnouncements"]

# Within the runtime's 2 s bound on the whole exchange, with room for the answer.
VERIFY_SECONDS: Final = 1.5
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
        malformed name or address), 401 (``token`` is not the Function's announce key), 403
        (the pod is not a live pod of the Function, or the address is not the connection's) or
        503 (the API server did not answer in time, or with an error)."""
        _check_names(function, pod)
        address = _address(ip, status=400, what=f"ip {ip!r}")
        source = _address(source_ip, status=403, what=f"the connection's address {source_ip!r}")
        if address != source:
            raise AnnouncementRefused(
                403, f"ip {ip} is not the address the announcement came from ({source_ip})"
            )
        secret_name = announce_secret_name(function.name)
        try:
            async with asyncio.timeout(self._seconds):
                secret, got = await asyncio.gather(
                    self._run(
                        self._client.get, SECRET, namespace=function.namespace, name=secret_name
                    ),
                    self._run(self._client.get, POD, namespace=function.namespace, name=pod),
                    return_exceptions=True,  # both awaited: a second failure is not left unseen
                )
        except TimeoutError:
            raise AnnouncementRefused(
                503, f"the API server did not verify pod {pod} within {self._seconds:g} s"
            ) from None
        # The key first: without it, the answer says nothing about the pod.
        _check_key(_answer(secret, pod=pod), token=token, function=function, name=secret_name)
        found: JSON | None = _answer(got, pod=pod)
        _check_pod(found, function=function, pod=pod, address=address)


def _answer(answer: T | BaseException, *, pod: str) -> T:
    if isinstance(answer, ApiError):
        # It names the call and the status; neither the Secret's data nor the token.
        raise AnnouncementRefused(
            503, f"the API server could not verify pod {pod}: {answer.status} {answer.reason}"
        ) from None
    if isinstance(answer, BaseException):
        raise answer
    return answer


def _check_key(
    secret: Mapping[str, Any] | None, *, token: str, function: FunctionKey, name: str
) -> None:
    """``token`` is the key in the Function's announce Secret (401 otherwise). Neither is
    quoted, and they are compared in constant time: the port is open to any address."""
    if secret is None:
        raise AnnouncementRefused(
            401, f"Function {function} has no announce key (Secret {name} does not exist)"
        )
    key = secret_text(secret).get(ANNOUNCE_KEY)
    if not key:
        raise AnnouncementRefused(
            401,
            f"Function {function} has no announce key (Secret {name} has no text at "
            f"{ANNOUNCE_KEY!r})",
        )
    if not hmac.compare_digest(token.encode(), key.encode()):
        raise AnnouncementRefused(401, f"the token is not Function {function}'s announce key")


def _check_pod(
    found: Mapping[str, Any] | None, *, function: FunctionKey, pod: str, address: Address
) -> None:
    """``found`` is a live pod of ``function``, not known at another address than the one
    announced (403 otherwise)."""
    if found is None:
        raise AnnouncementRefused(403, f"pod {pod} does not exist in {function.namespace}")
    meta = found.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        # A leaving pod must not take requests.
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
    # The Function's name goes into the Secret's path.
    if len(function.name) > 253 or not _SUBDOMAIN.fullmatch(function.name):
        raise AnnouncementRefused(400, f"{function.name!r} is not a Function name")
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
