"""The event gateway: routes HTTP requests, Lambda Invoke API calls and bucket events to functions.

Entry points for whoever runs it (local mode, the Kubernetes deployment): `create_gateway`
and `Gateway.serve` in `gateway.py`, the `Platform` protocol in `platforms.py`, and the
routing table in `routing.py`.
"""
