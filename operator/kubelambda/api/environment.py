"""The function contract every platform renders the same way: the environment a function's
runtime starts with, and how long a stopping instance may take.

The controller puts `runtime_environment` into a Deployment's pod template and local mode
into a runtime process's environment; both stop an instance within `stop_grace_seconds`.
"""

from __future__ import annotations

from typing import Final

from kubelambda.api.env import EnvVar
from kubelambda.api.function import Function

__all__ = [
    "FUNCTION_VERSION",
    "INVOKE_PORT",
    "METRICS_PORT",
    "SHUTDOWN_SECONDS",
    "TASK_ROOT",
    "runtime_environment",
    "stop_grace_seconds",
]

TASK_ROOT: Final = "/var/task"  # Lambda's, where a pod mounts the code
INVOKE_PORT: Final = 8080
METRICS_PORT: Final = 9102  # the runtime's second port: /metrics and /healthz only
FUNCTION_VERSION: Final = "$LATEST"  # there are no published versions
# Lambda's Shutdown phase: an environment gets 2 s after its last invocation to end.
SHUTDOWN_SECONDS: Final = 2


def stop_grace_seconds(function: Function) -> int:
    """How long a stopping instance may run: an invocation that started just before the stop
    has the function's whole timeout, then the shutdown phase."""
    return function.timeout_seconds + SHUTDOWN_SECONDS


def runtime_environment(
    function: Function,
    *,
    region: str,
    account_id: str,
    task_root: str = TASK_ROOT,
    port: int | None = INVOKE_PORT,
    metrics_port: int | None = METRICS_PORT,
) -> list[EnvVar]:
    """The runtime's variables (docs/contracts.md) followed by the user's `spec.env`.

    The spec refuses user variables that the runtime sets from it; AWS_REGION is the one a
    user may set, and then ours is left out. `port` or `metrics_port` None: the platform
    sets that variable itself (local mode picks a free port per instance).
    """
    user_names = {var.name for var in function.env}
    ours = {
        "_HANDLER": function.handler,  # None with an image: the image says
        "LAMBDA_TASK_ROOT": task_root,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": FUNCTION_VERSION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
        "AWS_REGION": region,
        "KUBELAMBDA_ACCOUNT_ID": account_id,
        "KUBELAMBDA_NAMESPACE": function.namespace,
        "KUBELAMBDA_CONCURRENCY": str(function.concurrency),
        "KUBELAMBDA_PORT": None if port is None else str(port),
        "KUBELAMBDA_METRICS_PORT": None if metrics_port is None else str(metrics_port),
    }
    rendered = [
        EnvVar(name=name, value=value)
        for name, value in ours.items()
        if value is not None and name not in user_names
    ]
    return rendered + list(function.env)
