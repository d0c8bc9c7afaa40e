"""A first function: greets whoever the event names."""

import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    if isinstance(event, dict) and event.get("version") == "2.0":  # called through an HTTP trigger
        params = event.get("queryStringParameters") or {}
        name = params.get("name", name)
    logger.info("greeting %s", name)
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"Hello, {name}!", "requestId": context.aws_request_id}),
    }
