"""A handler run by awslambdaric as a custom runtime's bootstrap (test_custom_runtime.py)."""

import os


def echo(event, context):
    if event.get("fail"):
        raise ValueError("the handler failed on purpose")
    print("awslambdaric handler says hello")
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "handler": os.environ.get("_HANDLER"),
    }
