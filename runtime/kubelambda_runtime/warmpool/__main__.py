"""``python -I -u -m kubelambda_runtime.warmpool FD``: the pool process's second step, which
``python -m kubelambda_runtime`` starts in its own place when ``KUBELAMBDA_POOL_PORT`` is set
(warmpool/handoff.py says why); FD holds its environment and the token's hash."""

from __future__ import annotations

import sys

from kubelambda_runtime.warmpool import handoff, process

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: set KUBELAMBDA_POOL_PORT and run python -m kubelambda_runtime")  # noqa: T201
        sys.exit(2)
    sys.exit(process.serve(handoff.read(int(sys.argv[1]))))
