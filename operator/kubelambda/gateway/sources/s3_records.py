"""Bucket notifications: what an S3 server posts becomes AWS S3 event records, matched to Triggers.

The gateway's `/_kubelambda/events/s3` endpoint calls `normalise` on each body (AWS's
`{"Records": [...]}` or MinIO's webhook body) and `matches` to pick the bucket Triggers
that receive each record.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

__all__ = ["NotificationError", "decoded_key", "matches", "normalise"]


class NotificationError(ValueError):
    """The body is not a bucket notification we can deliver; the message names the problem."""


# Optional record-level parts AWS sends for some event types; kept when present.
_AWS_EXTRAS = (
    "glacierEventData",
    "restoreEventData",
    "replicationEventData",
    "intelligentTieringEventData",
    "lifecycleEventData",
)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NotificationError(f"{where} is not an object")
    return value


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _event_time(value: object) -> str:
    # MinIO writes nanoseconds (RFC 3339); AWS writes milliseconds. Parsers such as
    # powertools' read this as a datetime, so rewrite it to AWS's form when we can.
    if not isinstance(value, str) or not value:
        return _text(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


def _aws_key(key: str, source: str) -> str:
    if source == "aws:s3":
        return key
    # Other servers URL-encode too, but not alike: MinIO also encodes '/'. Decode, then
    # encode as AWS does (form encoding, spaces as '+', '/' left alone).
    return quote_plus(unquote_plus(key), safe="/")


def _record(raw: object, index: int, region: str) -> dict[str, Any]:
    where = f"Records[{index}]"
    if not isinstance(raw, Mapping):
        raise NotificationError(f"{where} is not an object")
    s3 = _mapping(raw.get("s3"), f"{where}.s3")
    bucket = _mapping(s3.get("bucket"), f"{where}.s3.bucket")
    obj = _mapping(s3.get("object"), f"{where}.s3.object")
    name = bucket.get("name")
    if not isinstance(name, str) or not name:
        raise NotificationError(f"{where} has no s3.bucket.name")
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise NotificationError(f"{where} has no s3.object.key")
    event_name = raw.get("eventName")
    if not isinstance(event_name, str) or not event_name:
        raise NotificationError(f"{where} has no eventName")
    event_name = event_name.removeprefix("s3:")

    source = _text(raw.get("eventSource"))
    version = _text(raw.get("eventVersion"))
    user = _mapping(raw.get("userIdentity"), f"{where}.userIdentity")
    request = _mapping(raw.get("requestParameters"), f"{where}.requestParameters")
    response = _mapping(raw.get("responseElements"), f"{where}.responseElements")
    owner = _mapping(bucket.get("ownerIdentity"), f"{where}.s3.bucket.ownerIdentity")

    out_object: dict[str, Any] = {"key": _aws_key(key, source)}
    size = obj.get("size")
    if size is None and event_name.startswith("ObjectCreated:"):
        # MinIO omits a zero size (Go's omitempty); AWS always sends it on creation.
        size = 0
    # AWS leaves size and eTag out of delete events; keep whatever the server gave.
    for field, value in (
        ("size", size),
        ("eTag", obj.get("eTag")),
        ("versionId", obj.get("versionId")),
    ):
        if value not in (None, ""):
            out_object[field] = value
    out_object["sequencer"] = _text(obj.get("sequencer"))

    record: dict[str, Any] = {
        # An AWS record keeps its own version (replication and lifecycle events use 2.2/2.3).
        "eventVersion": version if source == "aws:s3" and version else "2.1",
        "eventSource": "aws:s3",
        "awsRegion": _text(raw.get("awsRegion")) or region,
        "eventTime": _event_time(raw.get("eventTime")),
        "eventName": event_name,
        "userIdentity": {"principalId": _text(user.get("principalId"))},
        "requestParameters": {"sourceIPAddress": _text(request.get("sourceIPAddress"))},
        # Both ids always present: strict parsers (powertools) require them.
        "responseElements": {
            "x-amz-request-id": _text(response.get("x-amz-request-id")),
            "x-amz-id-2": _text(response.get("x-amz-id-2")),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": _text(s3.get("configurationId")),
            "bucket": {
                "name": name,
                "ownerIdentity": {"principalId": _text(owner.get("principalId"))},
                "arn": f"arn:aws:s3:::{name}",
            },
            "object": out_object,
        },
    }
    for extra in _AWS_EXTRAS:
        if extra in raw:
            # Copied, so a handler-side change can never reach the caller's body.
            record[extra] = copy.deepcopy(raw[extra])
    return record


def normalise(body: object, *, region: str) -> list[dict[str, Any]]:
    """Return the body's records in AWS's exact S3 event shape, whatever server sent them.

    Accepts `{"Records": [...]}` from AWS or any S3 server, including MinIO's webhook body
    (whose `EventName` and `Key` are dropped, like MinIO's extra per-record fields).
    `region` fills an empty `awsRegion`. Raises `NotificationError` for anything that is
    not an object with a non-empty `Records` list whose records name a bucket, a key and
    an event.
    """
    if not isinstance(body, Mapping):
        raise NotificationError("notification body is not a JSON object")
    records = body.get("Records")
    if records is None:
        raise NotificationError("notification body has no Records")
    if not isinstance(records, list):
        raise NotificationError("Records is not a list")
    if not records:
        raise NotificationError("Records is empty")
    return [_record(raw, i, region) for i, raw in enumerate(records)]


def decoded_key(record: Mapping[str, Any]) -> str:
    """The object key of a normalised record as stored, the way AWS's samples decode it."""
    return unquote_plus(record["s3"]["object"]["key"])


def _event_matches(event_name: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("s3:")
    if pattern.endswith(":*"):
        # "ObjectCreated:*" covers "ObjectCreated:Put" but not "ObjectCreatedX:Put".
        return event_name.startswith(pattern[:-1])
    return event_name == pattern


def matches(
    record: Mapping[str, Any],
    *,
    bucket: str,
    events: Sequence[str],
    prefix: str,
    suffix: str,
) -> bool:
    """Whether a normalised record is for a Trigger on `bucket` with these filters.

    `events` are S3 notification event types with or without the `s3:` prefix
    (`s3:ObjectCreated:*`, `ObjectRemoved:Delete`); an empty list matches no event.
    `prefix` and `suffix` are tested against the decoded key, as S3 filter rules are.
    """
    if record["s3"]["bucket"]["name"] != bucket:
        return False
    event_name: str = record["eventName"]
    if not any(_event_matches(event_name, pattern) for pattern in events):
        return False
    key = decoded_key(record)
    return key.startswith(prefix) and key.endswith(suffix)
