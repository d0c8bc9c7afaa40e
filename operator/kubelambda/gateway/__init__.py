"""The event gateway: routes HTTP requests, Lambda Invoke API calls and bucket events to functions.

Layers, top down: `edge` (the ASGI apps, where errors become HTTP answers), `sources/` (one
module per way in: HTTP triggers, the Invoke API, S3 notifications), `invocation` (one
call to an instance), `activation` (holding and choosing instances) and `upstream` (the
connections to them). `server.Gateway` assembles them; `platform.Platform` is the seam to
whatever runs instances.
"""
