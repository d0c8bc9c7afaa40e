"""A `DeliveryJob` as bytes: what a job file (files.py) and a broker message (jetstream.py)
hold, so a job keeps its tries, its due time and its last error wherever it waits.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy

__all__ = ["decode_job", "encode_job"]

_VERSION = 1


def _key(key: FunctionKey | None) -> list[str] | None:
    return None if key is None else [key.namespace, key.name]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def encode_job(job: DeliveryJob, *, due_wall: float) -> bytes:
    """A job as bytes; `due_wall` is its due time as wall time (the
    monotonic clock starts again with the process)."""
    policy = job.policy
    document = {
        "version": _VERSION,
        "id": job.id,
        "payload": _b64(job.payload),
        "policy": {
            "retries": policy.retries,
            "backoffSeconds": policy.backoff_seconds,
            "deadLetterFunction": _key(policy.dead_letter_function),
            "deadLetterUrl": policy.dead_letter_url,
        },
        "invokedArn": job.invoked_arn,
        "enqueuedAt": job.enqueued_at,
        "function": _key(job.function),
        "url": job.url,
        "clientContext": _b64(job.client_context),
        "deadLetter": job.dead_letter,
        "attempts": job.attempts,
        "throttles": job.throttles,
        "due": due_wall,
        "lastError": job.last_error,
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _function_key(value: Any) -> FunctionKey | None:
    if value is None:
        return None
    namespace, name = value
    return FunctionKey(str(namespace), str(name))


def decode_job(data: bytes) -> tuple[DeliveryJob, float]:
    """The job a file holds and its due wall time; ValueError (or KeyError, TypeError)
    when the bytes are not what `encode_job` wrote."""
    document = json.loads(data)
    if document.get("version") != _VERSION:
        raise ValueError(f"unknown job file version {document.get('version')!r}")
    policy = document["policy"]
    context = document.get("clientContext")
    job = DeliveryJob(
        id=str(document["id"]),
        payload=base64.b64decode(document["payload"]),
        policy=DeliveryPolicy(
            retries=int(policy["retries"]),
            backoff_seconds=float(policy["backoffSeconds"]),
            dead_letter_function=_function_key(policy.get("deadLetterFunction")),
            dead_letter_url=policy.get("deadLetterUrl"),
        ),
        invoked_arn=str(document["invokedArn"]),
        enqueued_at=float(document["enqueuedAt"]),
        function=_function_key(document.get("function")),
        url=document.get("url"),
        client_context=None if context is None else base64.b64decode(context),
        dead_letter=bool(document.get("deadLetter", False)),
        attempts=int(document.get("attempts", 0)),
        throttles=int(document.get("throttles", 0)),
        last_error=document.get("lastError"),
    )
    if job.function is None and job.url is None:
        raise ValueError("job file names neither a function nor a URL")
    return job, float(document["due"])
