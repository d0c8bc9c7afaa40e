"""One try of an asynchronous job through a gateway's Lambda Invoke API (RequestResponse), so
the gateway's data path applies to it as to any caller: scale from zero, holding while an
instance starts, per-pod concurrency, authorisation and metrics.

``kubelambda dispatcher`` (and local mode with a broker) give a `GatewayCall` to
`AsyncDelivery`. The job's request id travels in ``X-Kubelambda-Request-Id``, so the function
sees the id the Event invocation was answered with, as on Lambda; its trace in
``X-Amzn-Trace-Id``, so the function joins the trace the event was accepted in.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.dispatcher.function_call import Outcome, json_or_text
from kubelambda.gateway.exceptions import GatewayError, InstanceUnavailable
from kubelambda.gateway.upstream import UpstreamPool, header_lines

__all__ = ["REQUEST_ID_HEADER", "GatewayCall"]

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Kubelambda-Request-Id"
TRACE_HEADER = "X-Amzn-Trace-Id"
# The gateway could not place the event now (no instance in time, full, starting): later.
_THROTTLED = frozenset({429, 502, 503, 504})
# The event itself is wrong (not JSON, too large): no retry makes it right.
_FINAL = frozenset({400, 413})


class GatewayCall:
    def __init__(
        self,
        *,
        url: str,
        pool: UpstreamPool,
        timeout_seconds: float,
        credentials: tuple[str, str] | None = None,
        region: str = "us-east-1",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the gateway URL must be http://HOST[:PORT], not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._base = parts.path.rstrip("/")
        self._pool = pool
        self._timeout = timeout_seconds
        self._signer = (
            SigV4Auth(Credentials(*credentials), "lambda", region) if credentials else None
        )

    def _headers(self, job: DeliveryJob, target: str) -> list[tuple[bytes, bytes]]:
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Invocation-Type": "RequestResponse",
            REQUEST_ID_HEADER: job.id,
        }
        if job.trace is not None:
            # botocore's SigV4 leaves X-Amzn-Trace-Id unsigned, as AWS's services do: a tracer
            # on the way may rewrite it.
            headers[TRACE_HEADER] = job.trace
        if job.client_context is not None:
            headers["X-Amz-Client-Context"] = base64.b64encode(job.client_context).decode()
        if self._signer is not None:
            # The host header as the pool sends it, port included, is the one signed.
            host = f"{self._host}:{self._port}"
            request = AWSRequest(
                method="POST",
                url=f"http://{host}{target}",
                data=job.payload,
                headers={**headers, "host": host},
            )
            self._signer.add_auth(request)
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, job: DeliveryJob) -> Outcome:
        function = job.function
        if function is None:
            raise ValueError(f"job {job.id} names no function")
        target = (
            f"{self._base}/2015-03-31/functions/{function.namespace}.{function.name}/invocations"
        )
        try:
            response = await self._pool.request(
                host=self._host,
                port=self._port,
                method=b"POST",
                target=target.encode("ascii"),
                headers=header_lines(self._headers(job, target)),
                body=job.payload,
                deadline=asyncio.get_running_loop().time() + self._timeout,
            )
        except (GatewayError, InstanceUnavailable) as exc:
            log.warning("the gateway did not take event %s: %s", job.id, exc)
            return Outcome(status=503, body=str(exc), throttled=True)
        status = response.status
        if status == 200:
            # The answer is read only if a destination or a batch's failures need it.
            function_error = response.header(b"x-amz-function-error")
            if function_error is None:
                return Outcome(status=200, raw=response.body)
            failed = function_error.decode("latin-1")
            return Outcome(status=200, function_error=failed, raw=response.body)
        body: Any = json_or_text(response.body)
        error_type = _error_type(response.header(b"x-amzn-errortype"), body)
        if status == 404 and error_type in (None, "ResourceNotFoundException"):
            return Outcome(status=404, gone=True)
        if status in _THROTTLED:
            return Outcome(status=status, body=body, throttled=True)
        if status in (401, 403):
            # The dispatcher's access key is missing or not granted: keep the event (until
            # its maximum age) while someone mends the key.
            log.error("the gateway refused the dispatcher's key (%s): %s", status, body)
            return Outcome(status=status, body=body, throttled=True)
        return Outcome(
            status=status,
            function_error=str(error_type or "ServiceException"),
            body=body,
            final=status in _FINAL,
        )


def _error_type(header: bytes | None, body: Any) -> str | None:
    """The Lambda error type of a refusal: the x-amzn-ErrorType header ("Type:details"),
    else the body's errorType."""
    if header:
        return header.decode("latin-1").split(":", 1)[0]
    if isinstance(body, dict) and isinstance(body.get("errorType"), str):
        return str(body["errorType"])
    return None
