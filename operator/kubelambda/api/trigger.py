"""The Trigger spec model: ``parse_trigger`` turns a decoded manifest or a kopf body into a Trigger.

The controller and the gateway (routes, bucket notifications) and local mode read Triggers
through it; it applies the CRD's defaults, bounds and CEL rules (crds/triggers.kubelambda.dev.yaml).
The queue and kafka sources live in streams.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

from kubelambda.api.delivery import Delivery, read_delivery
from kubelambda.api.errors import SpecError
from kubelambda.api.meta import read_meta
from kubelambda.api.patterns import DEFAULT_IDENTITY_SOURCE
from kubelambda.api.reader import Node, Reader
from kubelambda.api.schedule import Schedule, ScheduleError, parse_expression, zone
from kubelambda.api.schema import TRIGGER_FIELDS
from kubelambda.api.streams import KafkaSource, QueueSource, read_kafka, read_queue, read_time

KIND: Final = "Trigger"
SOURCE_KINDS: Final = ("http", "bucket", "schedule", "queue", "kafka")
# The gateway serves its own endpoints under these (DESIGN.md, "Gateway endpoints").
RESERVED_PATH_PREFIXES: Final = ("/_kubelambda", "/2015-03-31")


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the Trigger's namespace."""

    name: str
    key: str


@dataclass(frozen=True, kw_only=True)
class JwtAuth:
    """A JWT authorizer, as API Gateway HTTP APIs have: tokens signed by ``issuer`` (keys from
    ``jwks_url``, or found by OpenID discovery) for one of ``audience``; with ``scopes``, the
    token must hold one of them. The token is read from ``identity_source``."""

    issuer: str
    audience: tuple[str, ...]
    jwks_url: str | None = None
    scopes: tuple[str, ...] = ()
    identity_source: str = DEFAULT_IDENTITY_SOURCE


@dataclass(frozen=True)
class HttpAuth:
    """``none``; ``apiKey`` with the Secret key that holds the key callers must send; or
    ``jwt`` with its authorizer."""

    type: Literal["none", "apiKey", "jwt"] = "none"
    secret_ref: SecretKeyRef | None = None
    jwt: JwtAuth | None = None


@dataclass(frozen=True, kw_only=True)
class HttpSource:
    """Requests whose path starts with ``path``; ``methods`` is ("ANY",) or named methods."""

    path: str
    methods: tuple[str, ...] = ("ANY",)
    host: str | None = None
    auth: HttpAuth = HttpAuth()

    def allows(self, method: str) -> bool:
        return "ANY" in self.methods or method.upper() in self.methods


@dataclass(frozen=True, kw_only=True)
class S3Source:
    """The S3 server on which the operator subscribes the bucket to the gateway."""

    endpoint: str
    credentials_secret: str
    region: str | None = None


@dataclass(frozen=True, kw_only=True)
class BucketSource:
    """Notifications of ``bucket`` for ``events`` on keys with ``prefix`` and ``suffix``."""

    bucket: str
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)
    prefix: str = ""
    suffix: str = ""
    source: S3Source | None = None


@dataclass(frozen=True, kw_only=True)
class ScheduleSource:
    """EventBridge's schedule: `expression` (rate or cron) read in `timezone`, ticks only in
    [start, end]; a rate's periods count from `start`, else from the Trigger's creation."""

    expression: str
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None


Source: TypeAlias = HttpSource | BucketSource | ScheduleSource | QueueSource | KafkaSource


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """A valid, fully defaulted Trigger. ``delivery`` is None when the Function's applies."""

    name: str
    namespace: str
    function: str
    source: Source
    delivery: Delivery | None
    # metadata.creationTimestamp (RFC 3339, so it sorts as text); "" for a manifest file.
    created: str = ""


def parse_trigger(obj: object) -> Trigger:
    """Parse and validate a Trigger object, raising SpecError with every problem found."""
    reader = Reader(TRIGGER_FIELDS)
    trigger = _read_trigger(reader, obj)
    if reader.problems or trigger is None:
        raise SpecError(reader.problems)
    return trigger


def _read_trigger(reader: Reader, obj: object) -> Trigger | None:
    root = reader.root(obj)
    if root is None:
        return None
    name, namespace = read_meta(reader, root, kind=KIND)
    spec = reader.obj(root.child("spec"))
    if spec is None:
        return None
    function = reader.text(spec.child("function"))
    kinds = [key for key in SOURCE_KINDS if spec.child(key).present]
    if len(kinds) != 1:
        reader.report("spec", f"must set exactly one of {', '.join(SOURCE_KINDS)}")
    delivery_node = spec.child("delivery")
    if delivery_node.present and spec.child("http").present:
        reader.report(
            "spec.delivery",
            "applies to asynchronous triggers only (bucket, schedule, queue, kafka);"
            " HTTP requests are answered synchronously",
        )
    pulled = spec.child("queue").present or spec.child("kafka").present
    if pulled and delivery_node.child("onSuccess").present:
        reader.report(
            "spec.delivery.onSuccess",
            "does not apply to queue and kafka triggers (Lambda's event source mappings have"
            " no success destination)",
        )
    http = _read_http(reader, spec)
    bucket = _read_bucket(reader, spec)
    schedule = _read_schedule(reader, spec)
    queue = read_queue(reader, spec)
    kafka = read_kafka(reader, spec, namespace=namespace, name=name)
    delivery = read_delivery(reader, spec)
    source: Source | None = http or bucket or schedule or queue or kafka
    if source is None:
        return None
    created = root.child("metadata").child("creationTimestamp").value
    return Trigger(
        name=name,
        namespace=namespace,
        function=function,
        source=source,
        delivery=delivery,
        created=created if isinstance(created, str) else "",
    )


def _read_http(reader: Reader, spec: Node) -> HttpSource | None:
    node = reader.obj(spec.child("http"))
    if node is None:
        return None
    path = reader.text(node.child("path"))
    if path.startswith(RESERVED_PATH_PREFIXES):
        reader.report(
            f"{node.path}.path",
            "must not start with /_kubelambda or /2015-03-31, which the gateway reserves;"
            f" not {path!r}",
        )
    methods_node = node.child("methods")
    methods = tuple(reader.text(item) for item in reader.items(methods_node))
    if "ANY" in methods and len(methods) > 1:
        reader.report(methods_node.path, "lists ANY alone or only named methods")
    return HttpSource(
        path=path,
        methods=methods,
        host=reader.optional_text(node.child("host")),
        auth=_read_auth(reader, node),
    )


def _read_auth(reader: Reader, http: Node) -> HttpAuth:
    node = reader.obj(http.child("auth"))
    if node is None:
        return HttpAuth()
    auth_type = reader.text(node.child("type"))
    secret_ref = None
    if (ref := reader.obj(node.child("secretRef"))) is not None:
        secret_ref = SecretKeyRef(
            name=reader.text(ref.child("name")), key=reader.text(ref.child("key"))
        )
    at = f"{node.path}.secretRef"
    if auth_type == "apiKey" and not node.child("secretRef").present:
        reader.report(at, "is required when spec.http.auth.type is apiKey")
    if auth_type != "apiKey" and node.child("secretRef").present:
        reader.report(at, "is only for spec.http.auth.type apiKey")
    at = f"{node.path}.jwt"
    if auth_type == "jwt" and not node.child("jwt").present:
        reader.report(at, "is required when spec.http.auth.type is jwt")
    if auth_type != "jwt" and node.child("jwt").present:
        reader.report(at, "is only for spec.http.auth.type jwt")
    jwt = _read_jwt(reader, node)
    if auth_type == "apiKey":
        return HttpAuth(type="apiKey", secret_ref=secret_ref)
    if auth_type == "jwt" and jwt is not None:
        return HttpAuth(type="jwt", jwt=jwt)
    return HttpAuth()


def _read_jwt(reader: Reader, auth: Node) -> JwtAuth | None:
    node = reader.obj(auth.child("jwt"))
    if node is None:
        return None
    scopes = node.child("scopes")
    return JwtAuth(
        issuer=reader.text(node.child("issuer")),
        audience=tuple(reader.text(item) for item in reader.items(node.child("audience"))),
        jwks_url=reader.optional_text(node.child("jwksUrl")),
        scopes=tuple(reader.text(item) for item in reader.items(scopes)),
        identity_source=reader.text(node.child("identitySource")),
    )


def _read_bucket(reader: Reader, spec: Node) -> BucketSource | None:
    node = reader.obj(spec.child("bucket"))
    if node is None:
        return None
    source = None
    if (s3 := reader.obj(node.child("source"))) is not None:
        secret = reader.obj(s3.child("credentialsSecret"))
        source = S3Source(
            endpoint=reader.text(s3.child("endpoint")),
            credentials_secret=reader.text(secret.child("name")) if secret is not None else "",
            region=reader.optional_text(s3.child("region")),
        )
    return BucketSource(
        bucket=reader.text(node.child("bucket")),
        events=tuple(reader.text(item) for item in reader.items(node.child("events"))),
        prefix=reader.optional_text(node.child("prefix")) or "",
        suffix=reader.optional_text(node.child("suffix")) or "",
        source=source,
    )


def _read_schedule(reader: Reader, spec: Node) -> ScheduleSource | None:
    node = reader.obj(spec.child("schedule"))
    if node is None:
        return None
    expression = reader.text(node.child("expression"))
    timezone = reader.text(node.child("timezone"))
    try:
        parse_expression(expression)
    except ScheduleError as exc:
        reader.report(f"{node.path}.expression", str(exc))
    try:
        zone(timezone)
    except ScheduleError as exc:
        reader.report(f"{node.path}.timezone", str(exc))
    start = read_time(reader, node.child("start"))
    end = read_time(reader, node.child("end"))
    if start is not None and end is not None and end <= start:
        reader.report(f"{node.path}.end", "must be after spec.schedule.start")
    return ScheduleSource(expression=expression, timezone=timezone, start=start, end=end)


def schedule_of(trigger: Trigger) -> Schedule | None:
    """The Trigger's schedule, ready to give ticks; None for other sources."""
    source = trigger.source
    if not isinstance(source, ScheduleSource):
        return None
    created = _created(trigger.created)
    return Schedule(
        expression=parse_expression(source.expression),
        tz=zone(source.timezone),
        anchor=source.start or created,
        start=source.start,
        end=source.end,
    )


def _created(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        # A manifest file has no creation time: its periods count from a fixed origin.
        return datetime(2000, 1, 1, tzinfo=UTC)
