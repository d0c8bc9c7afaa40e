"""A `DeliveryJob` as bytes: what a job file (files.py) and a broker message (jetstream.py)
hold, so a job keeps its tries, its due time and its last error wherever it waits.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, Target

__all__ = ["decode_job", "encode_job"]

_VERSION = 1


def _key(key: FunctionKey | None) -> list[str] | None:
    return None if key is None else [key.namespace, key.name]


def _target(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {"function": _key(target.function), "url": target.url, "subject": target.subject}


def _read_target(value: Any) -> Target | None:
    if value is None:
        return None
    return Target(
        function=_function_key(value.get("function")),
        url=value.get("url"),
        subject=value.get("subject"),
    )


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
            "maxEventAgeSeconds": policy.max_event_age_seconds,
            "onSuccess": _target(policy.on_success),
            "onFailure": _target(policy.on_failure),
        },
        "invokedArn": job.invoked_arn,
        "enqueuedAt": job.enqueued_at,
        "function": _key(job.function),
        "url": job.url,
        "subject": job.subject,
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
            max_event_age_seconds=policy.get("maxEventAgeSeconds"),
            on_success=_read_target(policy.get("onSuccess")),
            on_failure=_read_target(policy.get("onFailure")),
        ),
        invoked_arn=str(document["invokedArn"]),
        enqueued_at=float(document["enqueuedAt"]),
        function=_function_key(document.get("function")),
        url=document.get("url"),
        subject=document.get("subject"),
        client_context=None if context is None else base64.b64decode(context),
        dead_letter=bool(document.get("deadLetter", False)),
        attempts=int(document.get("attempts", 0)),
        throttles=int(document.get("throttles", 0)),
        last_error=document.get("lastError"),
    )
    if job.function is None and job.url is None and job.subject is None:
        raise ValueError("the job names no function, URL or subject")
    return job, float(document["due"])
