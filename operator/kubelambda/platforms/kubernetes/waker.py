"""The gateway's wake-ups on a cluster: a request that finds no pod asks the autoscaler's
endpoint (``POST URL/wake/NAMESPACE/NAME``, docs/contracts.md) for an instance. When a warm
start made a pool pod the Function's, or the Deployment's first pod announced itself, the answer
names it, and the gateway sends to it at once rather than after the Function's EndpointSlice
lists it (a watch's delivery, or the kubelet's next report, later).

``kubelambda gateway`` gives an ``AutoscalerWaker`` to the ``KubernetesPlatform``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import urllib.parse
from typing import Final, NamedTuple

from kubelambda.api.identity import FunctionKey
from kubelambda.connect import first_connection
from kubelambda.gateway.platform import PlatformError

__all__ = ["WAKE_TIMEOUT_SECONDS", "AutoscalerWaker", "WarmPod"]

logger = logging.getLogger(__name__)

# The autoscaler answers a wake-up of a Function at zero once its first pod serves: a warm
# start's within 1 s, an announced Deployment pod's within 3 s (autoscaler/service.py).
WAKE_TIMEOUT_SECONDS: Final = 5.0
# The autoscaler's Service keeps its address; a name looked up on every wake-up cost 7-14 ms
# of the cluster's DNS (search domains first) in each cold start. Looked up again after a
# failed ask, and at least this often.
RESOLVE_SECONDS: Final = 30.0
MAX_ANSWER: Final = 4096  # a small JSON object


class WarmPod(NamedTuple):
    """A pod the autoscaler's warm start made the Function's, named in the wake-up's answer
    before the Function's EndpointSlice lists it."""

    name: str
    ip: str
    port: int


class AutoscalerWaker:
    """Asks the autoscaler for an instance: one small POST, bounded by a deadline."""

    def __init__(self, url: str, *, token: str | None = None, gateway: str | None = None) -> None:
        """``gateway``: this gateway's name in the wake-ups' reports (its pod's: the host
        name, by default)."""
        parsed = urllib.parse.urlsplit(url)
        self.gateway = gateway if gateway is not None else socket.gethostname()
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or 80
        self.base = parsed.path.rstrip("/")
        # The autoscaler takes wake-ups only with the release's token (chart: <release>-wake).
        self.authorization = f"Authorization: Bearer {token}\r\n" if token else ""
        self._address: tuple[str, float] | None = None  # (IP, when looked up)

    async def __call__(self, function: FunctionKey, concurrency: int) -> WarmPod | None:
        """Ask, with the requests this gateway holds and has in flight for the Function; the
        pod that serves the Function now when a warm start made one."""
        path = f"{self.base}/wake/{function.namespace}/{function.name}"
        body = json.dumps({"concurrency": concurrency, "gateway": self.gateway}).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self.authorization}Connection: close\r\n\r\n"
        ).encode() + body
        try:
            async with asyncio.timeout(WAKE_TIMEOUT_SECONDS):
                address = await self._resolve()
                reader, writer = await first_connection(
                    lambda: asyncio.open_connection(address, self.port),
                    discard=lambda made: made[1].close(),
                )
                try:
                    writer.write(request)
                    status, body = await _read_answer(reader)
                finally:
                    writer.close()
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
            self._address = None
            # The gateway asks again while requests wait; one failed ask is not fatal.
            logger.warning("waking %s: the autoscaler did not answer: %s", function, exc)
            return None
        if status == 404:
            raise PlatformError(f"the autoscaler knows no Function {function}")
        if status == 401:
            logger.warning(
                "waking %s: the autoscaler refused the wake-up token: the gateway's and the"
                " operator's KUBELAMBDA_WAKE_TOKEN differ",
                function,
            )
        elif status not in (200, 202):
            logger.warning("waking %s: the autoscaler answered %s", function, status or "nothing")
        return _warm_pod(body) if status == 202 else None

    async def _resolve(self) -> str:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._address is not None and now - self._address[1] < RESOLVE_SECONDS:
            return self._address[0]
        found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        if not found:
            raise OSError(f"{self.host} has no address")
        address = str(found[0][4][0])
        self._address = (address, now)
        return address


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length > MAX_ANSWER:
        return status, b""
    return status, await reader.readexactly(length)


def _warm_pod(body: bytes) -> WarmPod | None:
    """The answer's ``instance``, when it names a pod by a valid IP and port."""
    try:
        found = json.loads(body or b"{}").get("instance")
        if not isinstance(found, dict):
            return None
        pod = WarmPod(str(found["pod"]), str(ipaddress.ip_address(found["ip"])), found["port"])
    except (ValueError, KeyError, AttributeError, TypeError):
        logger.warning("the autoscaler's wake-up answer named no usable pod: %.200r", body)
        return None
    return pod if isinstance(pod.port, int) and 0 < pod.port < 65536 else None
