"""A Function's limits: how far it scales (``spec.scaling``, capped by
``spec.reservedConcurrency``) and how fast it may be invoked (``spec.throttling``).

function.py reads them with ``read_scaling`` and ``read_throttling`` (the reader applies the
CRD's defaults); the autoscaler, the controller and the gateway's limits act on the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubelambda.api.reader import Node, Reader

__all__ = ["Scaling", "Throttling", "pods_for", "read_scaling", "read_throttling"]


@dataclass(frozen=True, kw_only=True)
class Scaling:
    """The autoscaler's bounds; ``target_concurrency`` is resolved (it defaults to concurrency)
    and ``max_replicas`` is the effective cap: spec.scaling.maxReplicas, lowered to the pods
    spec.reservedConcurrency can keep busy (so 0 with a reservation of 0)."""

    min_replicas: int
    max_replicas: int
    target_concurrency: int
    scale_to_zero_after_seconds: int


@dataclass(frozen=True, kw_only=True)
class Throttling:
    """A function's rate limit (spec.throttling), in API Gateway's words: a token bucket that
    refills ``rate_limit`` requests per second and holds at most ``burst_limit``."""

    rate_limit: int
    burst_limit: int


def pods_for(reserved: int, concurrency: int) -> int:
    """The most pods a reservation can keep busy: ceil(reserved / concurrency)."""
    return -(-reserved // concurrency) if concurrency > 0 else 0


def read_scaling(reader: Reader, spec: Node, concurrency: int, reserved: int | None) -> Scaling:
    node = reader.obj(spec.child("scaling"))
    fields = node if node is not None else spec.child("scaling")
    min_replicas = reader.integer(fields.child("minReplicas"))
    max_replicas = reader.integer(fields.child("maxReplicas"))
    if max_replicas < min_replicas:
        reader.report(
            f"{fields.path}.maxReplicas",
            f"must be at least spec.scaling.minReplicas ({min_replicas}), not {max_replicas}",
        )
    target = reader.optional_integer(fields.child("targetConcurrency"))
    if target is not None and target > concurrency:
        reader.report(
            f"{fields.path}.targetConcurrency",
            f"must not exceed spec.concurrency ({concurrency}), not {target}",
        )
    if reserved is not None:
        # As on Lambda, reserved concurrency also caps scaling: no pod beyond those the
        # reservation can keep busy, and no warm pod (provisioned concurrency) beyond them.
        most = pods_for(reserved, concurrency)
        if min_replicas > most:
            reader.report(
                f"{fields.path}.minReplicas",
                f"must not exceed the {most} pods spec.reservedConcurrency ({reserved}) can keep"
                f" busy at spec.concurrency {concurrency}, not {min_replicas}",
            )
        max_replicas = min(max_replicas, most)
    return Scaling(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_concurrency=target if target is not None else concurrency,
        scale_to_zero_after_seconds=reader.integer(fields.child("scaleToZeroAfterSeconds")),
    )


def read_throttling(reader: Reader, spec: Node) -> Throttling | None:
    node = reader.obj(spec.child("throttling"))
    if node is None:
        return None
    rate = reader.integer(node.child("rateLimit"))
    burst = reader.optional_integer(node.child("burstLimit"))
    # API Gateway's bucket holds `burstLimit` tokens; unset, one second's worth.
    return Throttling(rate_limit=rate, burst_limit=burst if burst is not None else rate)
