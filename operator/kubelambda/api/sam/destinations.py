"""Where SAM sends records and failed events (EventInvokeConfig destinations, an event source
mapping's OnFailure, a queue's redrive target), as a ``spec.delivery`` destination.

A Lambda function of the same template becomes ``function``; an SQS queue becomes the JetStream
``subject`` named after it (``queue_stream``), the same name a queue Trigger reads as its stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kubelambda.api.sam.names import arn_resource, arn_service
from kubelambda.api.sam.scope import Scope

# SAM's destination Type → the ARN's service.
_TYPES: Final = {
    "Lambda": "lambda",
    "SQS": "sqs",
    "SNS": "sns",
    "EventBridge": "events",
    "S3Bucket": "s3",
}


def queue_stream(queue: str) -> str:
    """The JetStream stream (and subject) that stands for SQS queue ``queue``: JetStream names
    take no '.', so orders.fifo is orders_fifo."""
    return queue.replace(".", "_")


def destination(
    scope: Scope, resource: str, prop: str, config: Mapping[str, object]
) -> dict[str, object] | None:
    """The destination ``config`` ({Type, Destination}) names, or None (reported)."""
    report = scope.report
    arn = scope.text(resource, f"{prop}.Destination", config.get("Destination"))
    if arn is None:
        if "Destination" not in config:
            report.not_mapped(resource, prop, "has no Destination")
        return None
    kind = scope.text(resource, f"{prop}.Type", config.get("Type"))
    service = _TYPES.get(kind or "", "") or arn_service(arn)
    name = arn_resource(arn)
    if service == "lambda":
        function = scope.lambda_names.get(name)
        if function is None:
            report.not_mapped(
                resource, prop, f"Lambda function {name} is not in this template, so not converted"
            )
            return None
        return {"function": function}
    if service == "sqs":
        subject = queue_stream(name)
        report.note(
            resource,
            prop,
            f"SQS queue {name}: the records are published to JetStream subject {subject}; create a"
            f" stream {subject} capturing it to keep them",
        )
        return {"subject": subject}
    report.not_mapped(
        resource,
        prop,
        f"{service or 'that'} destination: only a Lambda function or an SQS queue maps",
    )
    return None
