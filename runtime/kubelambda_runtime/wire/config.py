"""The runtime's settings, read from the variables Lambda itself sets (plus kubelambda's own).

``__main__`` builds one ``Settings``; the server's pool hands each worker the environment
``worker_environment`` derives from it, so handlers see the variables Lambda sets, and the
worker reads its own ``Settings`` back from that environment.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import NamedTuple

from kubelambda_runtime.wire import ids

# The package's folder (kubelambda_runtime/, above wire/), as LAMBDA_RUNTIME_DIR names it.
_RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_TIMEOUT_SECONDS = 900
# Lambda's limit for a synchronous invocation's request and response payloads.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# A synchronous invocation's response may be 100 bytes more: Lambda answers larger ones with
# Function.ResponseSizeTooLarge naming 6291556 bytes (the emulator's maxPayloadSize,
# internal/lambda-managed-instances/aws-lambda-rie/internal/invoke/rie_invoke_request.go).
MAX_RESPONSE_BYTES = MAX_PAYLOAD_BYTES + 100
# Lambda's OS-only runtimes: the code brings an executable ``bootstrap`` that speaks the Lambda
# Runtime API (kubelambda_runtime/custom/) instead of a Python handler.
CUSTOM_RUNTIME_PREFIX = "provided"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class Settings(NamedTuple):
    handler: str  # empty: none given (a custom runtime's is optional)
    task_root: str
    function_name: str = "function"
    function_version: str = "$LATEST"
    memory_mb: int = 128
    timeout_seconds: float = 3.0
    region: str = "us-east-1"
    account_id: str = "000000000000"
    namespace: str = "default"
    concurrency: int = 1
    host: str = "0.0.0.0"
    port: int = 8080
    # A second port serving only /metrics and /healthz (0: none), so a scraper can be let in
    # without being let in to the invoke endpoint.
    metrics_port: int = 0
    # Enforce memory_mb with an address-space rlimit: for local mode, where no cgroup
    # enforces it. Off in pods, whose memory limit the kernel enforces.
    memory_rlimit: bool = False
    # The Function's spec.runtime when the platform says (KUBELAMBDA_RUNTIME); a custom one
    # (provided.al2023, provided.al2) runs the code's bootstrap.
    runtime: str = ""

    @property
    def custom_runtime(self) -> bool:
        return self.runtime.startswith(CUSTOM_RUNTIME_PREFIX)

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def from_environment(env: Mapping[str, str]) -> Settings:
    """Settings from environment variables; ConfigError names the one that is wrong."""
    handler = env.get("_HANDLER", "")
    runtime = env.get("KUBELAMBDA_RUNTIME", "")
    if not handler and not runtime.startswith(CUSTOM_RUNTIME_PREFIX):
        raise ConfigError("_HANDLER is not set: give the handler as module.function (app.handler)")
    timeout = env.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "")
    try:
        timeout_seconds = float(timeout) if timeout else 3.0
    except ValueError:
        raise ConfigError(
            f"AWS_LAMBDA_FUNCTION_TIMEOUT must be a number, got {timeout!r}"
        ) from None
    if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(
            f"AWS_LAMBDA_FUNCTION_TIMEOUT must be above 0 and at most {MAX_TIMEOUT_SECONDS}"
        )
    return Settings(
        handler=handler,
        task_root=env.get("LAMBDA_TASK_ROOT") or "/var/task",
        function_name=env.get("AWS_LAMBDA_FUNCTION_NAME") or "function",
        function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST",
        memory_mb=_int(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 128, low=64, high=10240),
        timeout_seconds=timeout_seconds,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        account_id=env.get("KUBELAMBDA_ACCOUNT_ID") or "000000000000",
        namespace=env.get("KUBELAMBDA_NAMESPACE") or "default",
        concurrency=_int(env, "KUBELAMBDA_CONCURRENCY", 1, low=1, high=1000),
        host=env.get("KUBELAMBDA_HOST") or "0.0.0.0",
        port=_int(env, "KUBELAMBDA_PORT", 8080, low=0, high=65535),
        metrics_port=_int(env, "KUBELAMBDA_METRICS_PORT", 0, low=0, high=65535),
        memory_rlimit=env.get("KUBELAMBDA_MEMORY_RLIMIT", "") in {"1", "true", "on"},
        runtime=runtime,
    )


def new_log_stream_name(settings: Settings) -> str:
    """A log stream name per execution environment, in Lambda's form."""
    day = time.strftime("%Y/%m/%d", time.gmtime())
    return f"{day}/[{settings.function_version}]{ids.uuid4_hex()}"


def worker_environment(
    settings: Settings, *, base: Mapping[str, str], log_stream_name: str
) -> dict[str, str]:
    """The environment a handler sees: the pod's own, plus the variables Lambda sets. A custom
    runtime's bootstrap gets what Lambda gives one: _HANDLER only when there is a handler, and
    neither AWS_EXECUTION_ENV (Lambda sets none for its OS-only runtimes) nor Python's own."""
    env = dict(base)
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    env.update(
        {
            "LAMBDA_TASK_ROOT": settings.task_root,
            "LAMBDA_RUNTIME_DIR": _RUNTIME_DIR,
            "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": settings.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{settings.timeout_seconds:g}",
            "AWS_LAMBDA_LOG_GROUP_NAME": settings.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION") or settings.region,
            "TZ": env.get("TZ") or ":UTC",
        }
    )
    if settings.handler:
        env["_HANDLER"] = settings.handler
    else:
        env.pop("_HANDLER", None)
    if settings.custom_runtime:
        env.pop("AWS_EXECUTION_ENV", None)
    else:
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{python}"
        env["PYTHONUNBUFFERED"] = "1"
    if settings.memory_rlimit:
        env["KUBELAMBDA_MEMORY_RLIMIT"] = "1"
    return env
