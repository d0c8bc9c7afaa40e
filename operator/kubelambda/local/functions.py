"""Turns Function specs into what local mode runs: a code folder and the runtime's environment.

The runner calls `prepare` once per Function; what local mode cannot do (images,
ConfigMap code, env from Secrets) is refused here with the field that asks for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubelambda.api import ConfigMapCode, FolderCode, Function, InlineCode


class UnsupportedLocally(ValueError):
    """A Function asks for something only a cluster provides; the message names the field."""


@dataclass(frozen=True)
class LocalFunction:
    """A Function as local mode runs it."""

    spec: Function
    code_dir: Path
    environment: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.namespace, self.spec.name)


def _where(function: Function) -> str:
    return f"Function {function.namespace}/{function.name}"


def _code_dir(function: Function, *, workdir: Path) -> Path:
    code = function.code
    if isinstance(code, FolderCode):
        return Path(code.path)
    if isinstance(code, InlineCode):
        digest = hashlib.sha256(repr(sorted(code.files.items())).encode()).hexdigest()[:12]
        target = workdir / "code" / function.namespace / f"{function.name}-{digest}"
        for name, source in code.files.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        return target
    if isinstance(code, ConfigMapCode):
        raise UnsupportedLocally(
            f"{_where(function)}: spec.code.configMapRef needs a cluster; "
            "locally use spec.code.inline or spec.code.path"
        )
    raise UnsupportedLocally(
        f"{_where(function)}: spec.image needs a cluster; locally give spec.runtime and code"
    )


def _environment(function: Function, *, region: str) -> dict[str, str]:
    env = {
        "_HANDLER": function.handler or "",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
        "AWS_REGION": region,
        "KUBELAMBDA_NAMESPACE": function.namespace,
        "KUBELAMBDA_CONCURRENCY": str(function.concurrency),
        # No cgroup limits memory here: the runtime enforces memoryMB itself.
        "KUBELAMBDA_MEMORY_RLIMIT": "1",
    }
    for index, variable in enumerate(function.env):
        if variable.value is None and (
            variable.config_map_key_ref
            or variable.secret_key_ref
            or variable.field_ref
            or variable.resource_field_ref
        ):
            raise UnsupportedLocally(
                f"{_where(function)}: spec.env[{index}].valueFrom ({variable.name}) reads "
                "from the cluster; locally give a value"
            )
        env[variable.name] = variable.value or ""
    return env


def prepare(function: Function, *, workdir: Path, region: str) -> LocalFunction:
    """The code folder and environment for one Function, or UnsupportedLocally."""
    if function.image:
        raise UnsupportedLocally(
            f"{_where(function)}: spec.image needs a cluster; locally give spec.runtime and code"
        )
    return LocalFunction(
        spec=function,
        code_dir=_code_dir(function, workdir=workdir),
        environment=_environment(function, region=region),
    )
