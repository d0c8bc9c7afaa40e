"""The gateway's wake-ups on a cluster: a request that finds no pod asks the autoscaler's
endpoint (``POST URL/wake/NAMESPACE/NAME``, docs/contracts.md) for an instance.

``kubelambda gateway`` gives an ``AutoscalerWaker`` to the ``KubernetesPlatform``.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import PlatformError

__all__ = ["WAKE_TIMEOUT_SECONDS", "AutoscalerWaker"]

logger = logging.getLogger(__name__)

WAKE_TIMEOUT_SECONDS = 2.0


class AutoscalerWaker:
    """Asks the autoscaler for an instance: one small POST, bounded by a deadline."""

    def __init__(self, url: str, *, token: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or 80
        self.base = parsed.path.rstrip("/")
        # The autoscaler takes wake-ups only with the release's token (chart: <release>-wake).
        self.authorization = f"Authorization: Bearer {token}\r\n" if token else ""

    async def __call__(self, function: FunctionKey) -> None:
        path = f"{self.base}/wake/{function.namespace}/{function.name}"
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: 0\r\n"
            f"{self.authorization}Connection: close\r\n\r\n"
        ).encode()
        try:
            async with asyncio.timeout(WAKE_TIMEOUT_SECONDS):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(request)
                    status_line = await reader.readline()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            # The gateway asks again while requests wait; one failed ask is not fatal.
            logger.warning("waking %s: the autoscaler did not answer: %s", function, exc)
            return
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
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
