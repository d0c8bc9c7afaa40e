"""Builds the gateway's routing table from Function and Trigger spec models (kubelambda.api).

Local mode calls `routing_table` with the manifests it loaded, the Kubernetes watcher
with the objects it sees; both hand the result to `Gateway.set_routes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kubelambda.api import BucketSource, Delivery, Function, HttpSource, Trigger
from kubelambda.gateway.platforms import FunctionKey
from kubelambda.gateway.routing import (
    BucketRoute,
    DeliveryPolicy,
    FunctionEntry,
    HttpRoute,
    RoutingTable,
)

__all__ = ["SecretResolver", "delivery_policy", "function_entry", "routing_table"]

SecretResolver = Callable[[str, str, str], str | None]
"""(namespace, secret name, key) → the value, or None when it cannot be read."""


def delivery_policy(delivery: Delivery, *, namespace: str) -> DeliveryPolicy:
    """`spec.delivery` of a Function or bucket Trigger; a dead-letter Function is in `namespace`."""
    letter = delivery.dead_letter
    return DeliveryPolicy(
        retries=delivery.retries,
        backoff_seconds=float(delivery.backoff_seconds),
        dead_letter_function=(
            FunctionKey(namespace, letter.function)
            if letter is not None and letter.function
            else None
        ),
        dead_letter_url=letter.url if letter is not None else None,
    )


def function_entry(function: Function) -> FunctionEntry:
    return FunctionEntry(
        key=FunctionKey(function.namespace, function.name),
        timeout_seconds=float(function.timeout_seconds),
        delivery=delivery_policy(function.delivery, namespace=function.namespace),
    )


def _api_keys(
    trigger: Trigger, source: HttpSource, secrets: SecretResolver | None
) -> frozenset[str] | None:
    auth = source.auth
    if auth.type != "apiKey":
        return None
    ref = auth.secret_ref
    value = None
    if ref is not None and secrets is not None:
        value = secrets(trigger.namespace, ref.name, ref.key)
    # No readable key: refuse every request rather than serve an open route.
    return frozenset({value.strip()}) if value and value.strip() else frozenset()


def routing_table(
    functions: Iterable[Function],
    triggers: Iterable[Trigger],
    *,
    default_namespace: str = "default",
    secrets: SecretResolver | None = None,
) -> RoutingTable:
    """The routing table for these Functions and Triggers.

    Triggers whose Function is missing are kept: their requests answer 404 naming the
    missing Function. `secrets` reads the API keys of `apiKey` routes.
    """
    entries = [function_entry(function) for function in functions]
    http: list[HttpRoute] = []
    buckets: list[BucketRoute] = []
    for trigger in triggers:
        key = FunctionKey(trigger.namespace, trigger.function)
        name = f"{trigger.namespace}/{trigger.name}"
        source = trigger.source
        if isinstance(source, HttpSource):
            http.append(
                HttpRoute(
                    function=key,
                    path=source.path,
                    methods=frozenset(m for m in source.methods if m != "ANY"),
                    host=source.host,
                    trigger=name,
                    api_keys=_api_keys(trigger, source, secrets),
                )
            )
        elif isinstance(source, BucketSource):
            buckets.append(
                BucketRoute(
                    function=key,
                    bucket=source.bucket,
                    events=source.events,
                    prefix=source.prefix,
                    suffix=source.suffix,
                    delivery=(
                        delivery_policy(trigger.delivery, namespace=trigger.namespace)
                        if trigger.delivery is not None
                        else None
                    ),
                    trigger=name,
                )
            )
    return RoutingTable(
        functions=entries, routes=http, buckets=buckets, default_namespace=default_namespace
    )
