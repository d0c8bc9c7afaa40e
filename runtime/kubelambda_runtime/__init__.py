"""The function runtime: serves the Lambda invoke endpoint and runs ``handler(event, context)``.

``server/`` runs in the runtime's main process, ``worker/`` in each execution environment's
process, and ``wire/`` is what both share. It imports nothing of ``kubelambda``, kopf or
FastAPI, so a function image carries only what a function needs.
"""
