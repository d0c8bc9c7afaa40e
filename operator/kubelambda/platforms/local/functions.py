"""Turns Function specs into what local mode runs: a code folder and the runtime's environment
(the function contract's, `kubelambda.api.environment`, as on a cluster).

`kubelambda local` calls `prepare` once per Function; what local mode cannot do (images,
ConfigMap code, env from Secrets) is refused here with the field that asks for it. Packages
and layers on S3 and a code folder's requirements.txt are prepared by `local.packages`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubelambda.api import ConfigMapCode, FolderCode, Function, InlineCode
from kubelambda.api.environment import SYSTEM_PATH, runtime_environment, stop_grace_seconds
from kubelambda.api.function import S3Object
from kubelambda.api.identity import FunctionKey
from kubelambda.api.packages import PackageStore
from kubelambda.platforms.local.packages import CodeUnavailable, LocalPackages, default_cache_dir

__all__ = ["CodeUnavailable", "LocalFunction", "UnsupportedLocally", "prepare"]


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


def _code_dir(function: Function, *, workdir: Path, packages: LocalPackages) -> Path:
    code = function.code
    if isinstance(code, S3Object):
        return packages.code(function)
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
    function: Function,
    *,
    code_dir: Path,
    opt_dir: Path | None,
    dependencies: Path | None,
    region: str,
    account_id: str,
) -> dict[str, str]:
    # Ports are the instance's own (KUBELAMBDA_PORT); local mode serves no metrics port.
    rendered = runtime_environment(
        function,
        region=region,
        account_id=account_id,
        task_root=str(code_dir),
        port=None,
        metrics_port=None,
        opt_root=str(opt_dir) if opt_dir is not None else "/opt",
        system_path=os.environ.get("PATH") or SYSTEM_PATH,
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
    if dependencies is not None:
        # Where `sam build` puts them: beside the code, so after the task root, before layers.
        paths = [str(dependencies), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    # No cgroup limits memory here: the runtime enforces memoryMB itself.
    env["KUBELAMBDA_MEMORY_RLIMIT"] = "1"
    return env


def prepare(
    function: Function,
    *,
    workdir: Path,
    region: str,
    account_id: str,
    packages: PackageStore | None = None,
    cache_dir: Path | None = None,
) -> LocalFunction:
    """The code folder and environment for one Function, or UnsupportedLocally (a ValueError
    naming the Function and the field). ``packages`` reads spec.code.s3 and spec.layers (with
    this machine's AWS credentials); ``cache_dir`` keeps unpacked zips by SHA-256 and
    requirements.txt environments by hash (default ~/.cache/kubelambda)."""
    if function.image:
        raise UnsupportedLocally(
            f"{_where(function)}: spec.image needs a cluster; locally give spec.runtime and code"
        )
    if packages is None and (isinstance(function.code, S3Object) or function.layers):
        raise UnsupportedLocally(
            f"{_where(function)}: spec.code.s3 and spec.layers need an S3 reader, and this"
            " kubelambda local was started without one"
        )
    local = LocalPackages(
        store=packages,
        cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
        scratch=workdir,
        region=region,
    )
    code_dir = _code_dir(function, workdir=workdir, packages=local)
    opt_dir = local.layers(function)
    dependencies = (
        local.requirements(function, code_dir / "requirements.txt")
        if isinstance(function.code, FolderCode)
        else None
    )
    return LocalFunction(
        spec=function,
        code_dir=code_dir,
        environment=_environment(
            function,
            code_dir=code_dir,
            opt_dir=opt_dir,
            dependencies=dependencies,
            region=region,
            account_id=account_id,
        ),
    )
