"""A `DeliveryJob` as bytes: what a job file (files.py) and a broker message (jetstream.py)
hold, so a job keeps its tries, its due time and its last error wherever it waits.

Written as three parts: one line of JSON with the job's own fields, one line of JSON with its
delivery policy, then the payload as it came (not base64, not parsed). Every event of a
function carries the same policy, so both directions keep the policies they saw and each event
costs one small JSON line and a copy of its payload. Jobs written as one JSON document (version
1, before) are still read, and so are jobs written before a job's trace (`"trace"`, written only
when set) was kept.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, Target

__all__ = ["decode_job", "encode_job"]

_VERSION = 2
_LEGACY_VERSION = 1
_NEWLINE = b"\n"
# Policies are few (one per function and Trigger): these bound what is kept of them.
_POLICIES_KEPT = 1024


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


def _function_key(value: Any) -> FunctionKey | None:
    if value is None:
        return None
    namespace, name = value
    return FunctionKey(str(namespace), str(name))


@lru_cache(maxsize=_POLICIES_KEPT)
def _policy_line(policy: DeliveryPolicy) -> bytes:
    """The policy's JSON line (json.dumps never writes a raw newline: it escapes them)."""
    document = {
        "retries": policy.retries,
        "backoffSeconds": policy.backoff_seconds,
        "deadLetterFunction": _key(policy.dead_letter_function),
        "deadLetterUrl": policy.dead_letter_url,
        "maxEventAgeSeconds": policy.max_event_age_seconds,
        "onSuccess": _target(policy.on_success),
        "onFailure": _target(policy.on_failure),
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _read_policy(policy: dict[str, Any]) -> DeliveryPolicy:
    return DeliveryPolicy(
        retries=int(policy["retries"]),
        backoff_seconds=float(policy["backoffSeconds"]),
        dead_letter_function=_function_key(policy.get("deadLetterFunction")),
        dead_letter_url=policy.get("deadLetterUrl"),
        max_event_age_seconds=policy.get("maxEventAgeSeconds"),
        on_success=_read_target(policy.get("onSuccess")),
        on_failure=_read_target(policy.get("onFailure")),
    )


@lru_cache(maxsize=_POLICIES_KEPT)
def _policy_from_line(line: bytes) -> DeliveryPolicy:
    return _read_policy(json.loads(line))


def encode_job(job: DeliveryJob, *, due_wall: float) -> bytes:
    """A job as bytes; `due_wall` is its due time as wall time (the
    monotonic clock starts again with the process)."""
    # The job's line is written by hand: the fields of a new event are few and fixed, and
    # this runs once per accepted event (json.dumps of a dict costs several times as much).
    parts = [
        f'{{"version":{_VERSION},"id":{_quoted(job.id)},"invokedArn":{_quoted(job.invoked_arn)}'
        f',"enqueuedAt":{float(job.enqueued_at)!r},"due":{float(due_wall)!r}'
    ]
    if job.function is not None:
        parts.append(
            f',"function":[{_quoted(job.function.namespace)},{_quoted(job.function.name)}]'
        )
    if job.url is not None:
        parts.append(f',"url":{_quoted(job.url)}')
    if job.subject is not None:
        parts.append(f',"subject":{_quoted(job.subject)}')
    if job.client_context is not None:
        parts.append(f',"clientContext":"{_b64(job.client_context)}"')
    if job.dead_letter:
        parts.append(',"deadLetter":true')
    if job.attempts:
        parts.append(f',"attempts":{int(job.attempts)}')
    if job.throttles:
        parts.append(f',"throttles":{int(job.throttles)}')
    if job.trace is not None:
        parts.append(f',"trace":{_quoted(job.trace)}')
    if job.last_error is not None:
        parts.append(f',"lastError":{json.dumps(job.last_error, separators=(",", ":"))}')
    parts.append("}\n")
    return b"".join(
        ("".join(parts).encode("ascii"), _policy_line(job.policy), _NEWLINE, job.payload)
    )


def decode_job(data: bytes) -> tuple[DeliveryJob, float]:
    """The job a file holds and its due wall time; ValueError (or KeyError, TypeError)
    when the bytes are not what `encode_job` wrote."""
    end = data.find(_NEWLINE)
    if end < 0:
        return _decode_legacy(data)
    second = data.find(_NEWLINE, end + 1)
    if second < 0:
        raise ValueError("a job without its policy line")
    document = json.loads(data[:end])
    if not isinstance(document, dict) or document.get("version") != _VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise ValueError(f"unknown job file version {version!r}")
    return _job(
        document,
        payload=data[second + 1 :],
        policy=_policy_from_line(data[end + 1 : second]),
    )


def _job(
    document: dict[str, Any], *, payload: bytes, policy: DeliveryPolicy
) -> tuple[DeliveryJob, float]:
    """The job a decoded document describes (both versions name its fields alike), and when
    it is due."""
    context = document.get("clientContext")
    job = DeliveryJob(
        id=str(document["id"]),
        payload=payload,
        policy=policy,
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
        trace=_trace(document.get("trace")),
    )
    return _named(job), float(document["due"])


def _trace(value: Any) -> str | None:
    """A job's trace header; absent from jobs written before traces were kept."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"a job's trace must be a string, not {value!r}")
    return value


def _named(job: DeliveryJob) -> DeliveryJob:
    if job.function is None and job.url is None and job.subject is None:
        raise ValueError("the job names no function, URL or subject")
    return job


def _decode_legacy(data: bytes) -> tuple[DeliveryJob, float]:
    """A job written as one JSON document with a base64 payload (version 1)."""
    document = json.loads(data)
    if document.get("version") != _LEGACY_VERSION:
        raise ValueError(f"unknown job file version {document.get('version')!r}")
    return _job(
        document,
        payload=base64.b64decode(document["payload"]),
        policy=_read_policy(document["policy"]),
    )
