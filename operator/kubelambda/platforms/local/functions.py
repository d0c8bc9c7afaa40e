"""Turns Function specs into what local mode runs: a code folder and the runtime's environment
(the function contract's, `kubelambda.api.environment`, as on a cluster).

`kubelambda local` calls `prepare` once per Function; what local mode cannot do (images,
ConfigMap code, env from Secrets) is refused here with the field that asks for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubelambda.api import ConfigMapCode, FolderCode, Function, InlineCode
from kubelambda.api.environment import runtime_environment, stop_grace_seconds
from kubelambda.api.identity import FunctionKey


class UnsupportedLocally(ValueError):
    """A Function asks for something only a cluster provides; the message names the field."""


@dataclass(frozen=True)
class LocalFunction:
    """A Function as local mode runs it."""

    spec: Function
    code_dir: Path
    environment: Mapping[str, str]

    @property
    def key(self) -> FunctionKey:
        return FunctionKey(self.spec.namespace, self.spec.name)

    @property
    def stop_grace_seconds(self) -> int:
        """How long a stopping instance may take before it is killed (the contract's)."""
        return stop_grace_seconds(self.spec)


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


def _environment(
    function: Function, *, code_dir: Path, region: str, account_id: str
) -> dict[str, str]:
    # Ports are the instance's own (KUBELAMBDA_PORT); local mode serves no metrics port.
    rendered = runtime_environment(
        function,
        region=region,
        account_id=account_id,
        task_root=str(code_dir),
        port=None,
        metrics_port=None,
    )
    env: dict[str, str] = {}
    for variable in rendered:
        if variable.value is None and (
            variable.config_map_key_ref
            or variable.secret_key_ref
            or variable.field_ref
            or variable.resource_field_ref
        ):
            index = function.env.index(variable)
            raise UnsupportedLocally(
                f"{_where(function)}: spec.env[{index}].valueFrom ({variable.name}) reads "
                "from the cluster; locally give a value"
            )
        env[variable.name] = variable.value or ""
    # No cgroup limits memory here: the runtime enforces memoryMB itself.
    env["KUBELAMBDA_MEMORY_RLIMIT"] = "1"
    return env


def prepare(function: Function, *, workdir: Path, region: str, account_id: str) -> LocalFunction:
    """The code folder and environment for one Function, or UnsupportedLocally."""
    if function.image:
        raise UnsupportedLocally(
            f"{_where(function)}: spec.image needs a cluster; locally give spec.runtime and code"
        )
    code_dir = _code_dir(function, workdir=workdir)
    return LocalFunction(
        spec=function,
        code_dir=code_dir,
        environment=_environment(function, code_dir=code_dir, region=region, account_id=account_id),
    )
