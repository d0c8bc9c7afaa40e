"""SAM's asynchronous and polled events as Triggers: S3 → bucket, Schedule and ScheduleV2 →
schedule, SQS → queue (a JetStream stream named after the queue), SelfManagedKafka → kafka.

convert.py calls ``event_trigger`` for each event of these types (http.py has Api/HttpApi).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

from kubelambda.api.patterns import BUCKET, S3_EVENT, SCHEDULE
from kubelambda.api.sam.event_sources import kafka_trigger, queue_trigger
from kubelambda.api.sam.resources import logical_ref
from kubelambda.api.sam.scope import Scope, mapping
from kubelambda.api.schedule import ScheduleError, parse_expression, zone

EVENT_TYPES: Final = ("S3", "Schedule", "ScheduleV2", "SQS", "SelfManagedKafka")
_IGNORED: Final = {
    "Name": "descriptive only",
    "Description": "descriptive only",
    "GroupName": "no schedule groups",
    "OmitName": "descriptive only",
    "KmsKeyArn": "no encryption keys of AWS",
    "RoleArn": "IAM has no meaning here",
    "PermissionsBoundary": "IAM has no meaning here",
    "FlexibleTimeWindow": "ticks fire on time",
    "MetricsConfig": "the dispatcher's own metrics apply",
    "LoggingConfig": "the dispatcher's own log applies",
}


def event_trigger(
    scope: Scope,
    *,
    resource: str,
    event: str,
    kind: str,
    props: Mapping[str, object],
    raw: Mapping[str, object],
) -> dict[str, object] | None:
    """The Trigger ``spec`` for one event, or None (reported, or a disabled event)."""
    at = f"Events.{event}.Properties"
    mappers: dict[str, tuple[frozenset[str], Callable[..., dict[str, object] | None]]] = {
        "S3": (frozenset({"Bucket", "Events", "Filter"}), _bucket),
        "Schedule": (frozenset({"Schedule", "Enabled", "State"}), _schedule),
        "ScheduleV2": (
            frozenset(
                {
                    "ScheduleExpression",
                    "ScheduleExpressionTimezone",
                    "StartDate",
                    "EndDate",
                    "State",
                }
            ),
            _schedule_v2,
        ),
        "SQS": (
            frozenset(
                {
                    "Queue",
                    "BatchSize",
                    "MaximumBatchingWindowInSeconds",
                    "Enabled",
                    "FilterCriteria",
                    "FunctionResponseTypes",
                    "ScalingConfig",
                }
            ),
            queue_trigger,
        ),
        "SelfManagedKafka": (
            frozenset(
                {
                    "KafkaBootstrapServers",
                    "Topics",
                    "ConsumerGroupId",
                    "StartingPosition",
                    "StartingPositionTimestamp",
                    "BatchSize",
                    "MaximumBatchingWindowInSeconds",
                    "Enabled",
                    "FilterCriteria",
                    "FunctionResponseTypes",
                    "MaximumRetryAttempts",
                    "SourceAccessConfigurations",
                    "DestinationConfig",
                }
            ),
            kafka_trigger,
        ),
    }
    known, mapper = mappers[kind]
    for key in props:
        if key in _IGNORED and key not in known:
            scope.report.ignored(resource, f"{at}.{key}", _IGNORED[key])
        elif key not in known:
            scope.report.not_mapped(resource, f"{at}.{key}", f"not mapped to a {kind} Trigger")
    if not scope.flag(resource, f"{at}.Enabled", props.get("Enabled"), default=True) or (
        scope.text(resource, f"{at}.State", props.get("State")) == "DISABLED"
    ):
        scope.report.ignored(resource, f"Events.{event}", "disabled in the template: no Trigger")
        return None
    result: dict[str, object] | None = mapper(scope, resource, at, props, raw)
    return result


def _bucket(
    scope: Scope, resource: str, at: str, props: Mapping[str, object], raw: Mapping[str, object]
) -> dict[str, object] | None:
    report = scope.report
    bucket = scope.text(resource, f"{at}.Bucket", props.get("Bucket"))
    if bucket is None:
        return None
    scope.used.add(logical_ref(raw.get("Bucket")) or bucket)
    if not (3 <= len(bucket) <= 63 and re.fullmatch(BUCKET, bucket)):
        report.not_mapped(resource, f"{at}.Bucket", f"{bucket!r} is not an S3 bucket name")
        return None
    events = props.get("Events")
    events = [events] if isinstance(events, str) else events
    if not (
        isinstance(events, list)
        and events
        and all(isinstance(e, str) and re.fullmatch(S3_EVENT, e) for e in events)
    ):
        report.not_mapped(resource, f"{at}.Events", f"{events!r} are not S3 event names")
        return None
    source: dict[str, object] = {"bucket": bucket, "events": events}
    rules = mapping(mapping(props.get("Filter")).get("S3Key")).get("Rules")
    for rule in rules if isinstance(rules, list) else []:
        name = str(mapping(rule).get("Name", "")).lower()
        value = scope.text(resource, f"{at}.Filter.S3Key.Rules", mapping(rule).get("Value"))
        if name in ("prefix", "suffix") and value is not None:
            source[name] = value
        else:
            report.not_mapped(resource, f"{at}.Filter.S3Key.Rules", f"rule {rule!r} not mapped")
    report.note(
        resource,
        at,
        f"bucket {bucket}: subscribe it to the gateway on your S3 server by hand, or add"
        " spec.bucket.source (the server's endpoint and a credentials Secret) to the Trigger",
    )
    return {"bucket": source}


def _expression(scope: Scope, resource: str, prop: str, value: object) -> str | None:
    expression = scope.text(resource, prop, value)
    if expression is None:
        if value is None:
            scope.report.not_mapped(resource, prop, "is required")
        return None
    try:
        if re.fullmatch(SCHEDULE, expression) is None:
            raise ScheduleError("only rate(...) and cron(...) expressions repeat")
        parse_expression(expression)
    except ScheduleError as error:
        scope.report.not_mapped(resource, prop, f"{expression}: {error}")
        return None
    return expression


def _schedule(
    scope: Scope, resource: str, at: str, props: Mapping[str, object], raw: Mapping[str, object]
) -> dict[str, object] | None:
    expression = _expression(scope, resource, f"{at}.Schedule", props.get("Schedule"))
    return {"schedule": {"expression": expression}} if expression is not None else None


def _schedule_v2(
    scope: Scope, resource: str, at: str, props: Mapping[str, object], raw: Mapping[str, object]
) -> dict[str, object] | None:
    report = scope.report
    expression = _expression(
        scope, resource, f"{at}.ScheduleExpression", props.get("ScheduleExpression")
    )
    if expression is None:
        return None
    schedule: dict[str, object] = {"expression": expression}
    timezone = scope.text(
        resource, f"{at}.ScheduleExpressionTimezone", props.get("ScheduleExpressionTimezone")
    )
    if timezone is not None:
        try:
            zone(timezone)
        except ScheduleError as error:
            report.not_mapped(resource, f"{at}.ScheduleExpressionTimezone", str(error))
            return None
        schedule["timezone"] = timezone
    for key, field in (("StartDate", "start"), ("EndDate", "end")):
        moment = _moment(scope, resource, f"{at}.{key}", props.get(key))
        if moment is not None:
            schedule[field] = moment
    report.note(
        resource,
        at,
        "each tick sends EventBridge's Scheduled Event (source aws.events), not EventBridge"
        " Scheduler's own notification",
    )
    return {"schedule": schedule}


def _moment(scope: Scope, resource: str, prop: str, value: object) -> str | None:
    text = scope.text(resource, prop, value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        scope.report.not_mapped(resource, prop, f"{text!r} is not an ISO 8601 date and time")
        return None
    # EventBridge Scheduler reads a date without an offset as UTC.
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")
