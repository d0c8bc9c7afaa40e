"""The warm pool's runtime side: a pool pod's process, which imports what a runtime and its
workers import, waits, and is specialised on demand into one function's runtime (issue 14;
docs/contracts.md, "Warm pool: specialising a pool pod").

``python -m kubelambda_runtime`` runs ``handoff.become_pool`` when ``KUBELAMBDA_POOL_PORT`` is
set, which becomes ``python -m kubelambda_runtime.warmpool`` (``process.serve``). Modules:
``settings`` (the pool's own variables), ``handoff`` (the first step, which keeps the token out
of the pool), ``exchange`` (the pool port's small HTTP/1.1), ``specialization`` (a specialise
request, checked, and the task folder written from it), ``prefork`` (the runtime forked while
the pool waits), ``lifecycle`` (the function's runtime: started, read, stopped), ``process``
(the loop: health, specialising, the stop).
"""
