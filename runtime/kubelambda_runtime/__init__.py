"""The function runtime: serves the Lambda invoke endpoint and runs ``handler(event, context)``.

It imports nothing of ``kubelambda``, kopf or FastAPI, so a function image carries only
what a function needs.
"""
