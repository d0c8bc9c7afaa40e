"""The function contract every platform renders the same way: the environment a function's
runtime starts with (with Lambda's layer paths when it has layers), and how long a stopping
instance may take.

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
    "LAYER_VARIABLES",
    "METRICS_PORT",
    "OPT_ROOT",
    "SHUTDOWN_SECONDS",
    "SYSTEM_PATH",
    "TASK_ROOT",
    "layer_paths",
    "runtime_environment",
    "stop_grace_seconds",
]

TASK_ROOT: Final = "/var/task"  # Lambda's, where a pod mounts the code
OPT_ROOT: Final = "/opt"  # Lambda's, where layers are unpacked
# The runtime image's PATH (python:3.x-slim's); Lambda appends /opt/bin to its own.
SYSTEM_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The variables layers extend, as Lambda's Python runtimes set them.
LAYER_VARIABLES: Final = ("PYTHONPATH", "PATH", "LD_LIBRARY_PATH")
INVOKE_PORT: Final = 8080
METRICS_PORT: Final = 9102  # the runtime's second port: /metrics and /healthz only
FUNCTION_VERSION: Final = "$LATEST"  # there are no published versions
# Lambda's Shutdown phase: an environment gets 2 s after its last invocation to end.
SHUTDOWN_SECONDS: Final = 2


def stop_grace_seconds(function: Function) -> int:
    """How long a stopping instance may run: an invocation that started just before the stop
    has the function's whole timeout, then the shutdown phase."""
    return function.timeout_seconds + SHUTDOWN_SECONDS


def layer_paths(
    function: Function, *, task_root: str, opt_root: str, system_path: str
) -> dict[str, str]:
    """Lambda's paths into its layers: the import path reads the task root (the runtime puts
    it first), then python/lib/pythonX.Y/site-packages, then python; commands come from bin
    after the system's; shared libraries from the task root's lib, then the layers' lib.
    Empty without layers: a function without them keeps the environment it always had."""
    if not function.layers:
        return {}
    python = f"{opt_root}/python"
    version = function.runtime or "python3"
    return {
        "PYTHONPATH": f"{python}/lib/{version}/site-packages:{python}",
        "PATH": f"{system_path}:{opt_root}/bin",
        "LD_LIBRARY_PATH": f"{task_root}/lib:{opt_root}/lib",
    }


def runtime_environment(
    function: Function,
    *,
    region: str,
    account_id: str,
    task_root: str = TASK_ROOT,
    port: int | None = INVOKE_PORT,
    metrics_port: int | None = METRICS_PORT,
    opt_root: str = OPT_ROOT,
    system_path: str = SYSTEM_PATH,
) -> list[EnvVar]:
    """The runtime's variables (docs/contracts.md) followed by the user's `spec.env`.

    The spec refuses user variables that the runtime sets from it; AWS_REGION is the one a
    user may set, and then ours is left out. `port` or `metrics_port` None: the platform
    sets that variable itself (local mode picks a free port per instance). With layers,
    `layer_paths` under `opt_root`: a user's own PYTHONPATH, PATH or LD_LIBRARY_PATH value
    comes first and the layers' follow (Lambda lets users extend these); one read from a
    Secret or ConfigMap replaces ours.
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
        # The runtime runs the code's bootstrap for these (kubelambda_runtime/custom/).
        "KUBELAMBDA_RUNTIME": function.runtime if function.custom_runtime else None,
    }
    rendered = [
        EnvVar(name=name, value=value)
        for name, value in ours.items()
        if value is not None and name not in user_names
    ]
    paths = layer_paths(function, task_root=task_root, opt_root=opt_root, system_path=system_path)
    rendered += [
        EnvVar(name=name, value=value) for name, value in paths.items() if name not in user_names
    ]
    user = [_extended(var, paths[var.name]) if var.name in paths else var for var in function.env]
    return rendered + user


def _extended(var: EnvVar, ours: str) -> EnvVar:
    """A user's literal path variable with the layers' paths after it; one read from a Secret
    or ConfigMap is kept as it is (its value is not known here)."""
    if var.config_map_key_ref or var.secret_key_ref or var.field_ref or var.resource_field_ref:
        return var
    return EnvVar(name=var.name, value=f"{var.value}:{ours}" if var.value else ours)
