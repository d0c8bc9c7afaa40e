"""The announcement endpoint: ``POST /announce/NAMESPACE/NAME`` from a Function's starting pod,
verified and handed to the wake-ups waiting for it (arrivals.py; docs/contracts.md).

It has a port of its own, open to any address: a NetworkPolicy engine that learns pods from the
API server cannot match a pod the kubelet has not reported yet, which is every announcing pod,
so only authentication can admit it here (its Function's key, from the Function's Secret). The
wake-up port stays the gateway's. ``AutoscalerService`` serves it when given a verifier.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from typing import Final

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.arrivals import AnnouncementRefused, Arrivals, Instance
from kubelambda.autoscaler.arrivals import VerifyAnnouncement as Verify
from kubelambda.autoscaler.asgi import Receive, Scope, Send, answer, read_body

__all__ = ["MAX_ANNOUNCEMENT", "MAX_VERIFYING", "AnnounceApp"]

logger = logging.getLogger(__name__)

MAX_ANNOUNCEMENT: Final = 4096  # {"pod", "ip", "port"}
# Verifications at once (each two GETs, the key's Secret and the pod): the port is open to any
# address, so a flood of made-up keys must not turn into a flood of requests to the API server.
MAX_VERIFYING: Final = 16


class AnnounceApp:
    """The ASGI app of the announcement port (and ``GET /healthz``)."""

    def __init__(
        self,
        *,
        verify: Verify,
        arrivals: Arrivals,
        leading: Callable[[], bool],
        max_verifying: int = MAX_VERIFYING,
    ) -> None:
        self._verify = verify
        self._arrivals = arrivals
        self._leading = leading
        self._verifying = 0
        self._max_verifying = max_verifying

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        parts = scope["path"].strip("/").split("/")
        if scope["path"] == "/healthz":
            await answer(send, 200, {"leading": self._leading()})
        elif scope["method"] == "POST" and len(parts) == 3 and parts[0] == "announce":
            await self._announcement(FunctionKey(parts[1], parts[2]), scope, receive, send)
        else:
            await answer(send, 404, {"message": "POST /announce/NAMESPACE/NAME or GET /healthz"})

    async def _announcement(
        self, function: FunctionKey, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A starting pod says it serves: verified, it goes to the wake-ups waiting for it."""
        if not self._leading():
            await answer(send, 503, {"message": "this autoscaler is standing by"})
            return
        if not self._arrivals.expected(function):
            # Only a scale from zero has wake-ups waiting; the later pods of a scale-up (and
            # of any restart) would each cost the API server two requests for nothing.
            await answer(send, 202, {"pod": None, "message": "no wake-up waits for a pod"})
            return
        if self._verifying >= self._max_verifying:
            await answer(send, 503, {"message": "too many announcements at once"})
            return
        self._verifying += 1
        try:
            token = _bearer(scope)
            instance = _instance(await _body(receive, MAX_ANNOUNCEMENT))
            client = scope.get("client") or ("", 0)
            await self._verify(
                token=token,
                function=function,
                pod=instance.pod,
                ip=instance.ip,
                source_ip=str(client[0]),
            )
        except AnnouncementRefused as refused:
            logger.warning("announcement for %s refused: %s", function, refused.message)
            await answer(send, refused.status, {"message": refused.message})
            return
        finally:
            self._verifying -= 1
        logger.info("%s: pod %s announced it serves", function, instance.pod)
        self._arrivals.arrived(function, instance)
        await answer(send, 202, {"pod": instance.pod})


def _bearer(scope: Scope) -> str:
    sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, token = sent.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AnnouncementRefused(401, "an announcement needs its Function's key (Bearer)")
    return token.strip()


async def _body(receive: Receive, limit: int) -> bytes:
    body = await read_body(receive, limit)
    if body is None:
        raise AnnouncementRefused(400, f"the announcement is over {limit} bytes")
    return body


def _instance(body: bytes) -> Instance:
    """The announced pod: ``{"pod": NAME, "ip": ADDRESS, "port": PORT}``."""
    try:
        found = json.loads(body)
        pod, ip, port = found["pod"], found["ip"], found["port"]
        if not isinstance(pod, str) or not pod or not isinstance(port, int):
            raise TypeError("pod must be a name and port a number")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        return Instance(pod, str(ipaddress.ip_address(ip)), port)
    except (ValueError, KeyError, TypeError) as exc:
        raise AnnouncementRefused(
            400, f'an announcement is {{"pod": NAME, "ip": ADDRESS, "port": PORT}}: {exc}'
        ) from None
