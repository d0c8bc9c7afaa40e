"""Orders over HTTP (API Gateway HTTP API payload 2.0), as it runs on AWS Lambda."""

import json
import os
import uuid

ORDERS: dict[str, dict] = {}


def respond(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def handler(event, context):
    if "requestContext" not in event:  # invoked directly: boto3, aws lambda invoke
        return {
            "stage": os.environ["STAGE"],
            "store": os.environ["STORE_NAME"],
            "receipts": os.environ["RECEIPTS_BUCKET"],
            "audit": os.environ["AUDIT_FUNCTION_ARN"],
            "orders": len(ORDERS),
        }
    method = event["requestContext"]["http"]["method"]
    if method == "POST":
        order = {"id": uuid.uuid4().hex[:8], **json.loads(event.get("body") or "{}")}
        ORDERS[order["id"]] = order
        return respond(201, order)
    order_id = event["rawPath"].rstrip("/").rsplit("/", 1)[-1]
    if order_id != "orders":  # GET /orders/ID
        order = ORDERS.get(order_id)
        return respond(200, order) if order else respond(404, {"message": "no such order"})
    return respond(200, {"orders": list(ORDERS.values()), "store": os.environ["STORE_NAME"]})
