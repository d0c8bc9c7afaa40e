"""Custom runtimes (``provided.al2023``, ``provided.al2``): the code's executable ``bootstrap``
runs each execution environment's invocations through the Lambda Runtime API, which a worker
process of this package serves it on loopback (``python -m kubelambda_runtime.worker`` turns
into one when the settings name a custom runtime)."""
