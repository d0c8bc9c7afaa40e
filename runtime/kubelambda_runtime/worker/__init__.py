"""An execution environment's process (``python -m kubelambda_runtime.worker``), started by the
server's pool. It imports neither asyncio nor anything of ``server/``: a worker's import time
is a cold start's."""
