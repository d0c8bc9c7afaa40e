"""What a function pod's init container is told to fetch (`FetchPlan`: the zips the controller
pinned, in unpacking order, and the Secrets whose keys it gets) and how it is carried out
(`install_plan`: each zip fetched and unpacked within one 250 MB budget).

The Deployment builder writes the plan into the init container's arguments; `kubelambda
fetch-code` reads it back and calls `install_plan`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kubelambda.api.function import S3Object
from kubelambda.api.packages import (
    SECRET_KEYS,
    PackageStore,
    ResolvedPackage,
    S3Access,
    Target,
    secret_access,
)
from kubelambda.api.unpack import Budget, unpack

__all__ = [
    "FetchPlan",
    "PlannedZip",
    "credential_variable",
    "fetch_into",
    "install_plan",
]


@dataclass(frozen=True, kw_only=True)
class PlannedZip:
    """One zip of a fetch plan: where it goes, what to name it in messages, the object
    (version and SHA-256 pinned) and which credentials (an index into the plan's Secrets,
    None: unsigned)."""

    target: Target
    what: str
    bucket: str
    key: str
    sha256: str
    endpoint: str | None = None
    region: str | None = None
    version_id: str | None = None
    credentials: int | None = None

    @property
    def source(self) -> S3Object:
        return S3Object(
            bucket=self.bucket,
            key=self.key,
            endpoint=self.endpoint,
            region=self.region,
            version_id=self.version_id,
            sha256=self.sha256,
        )


@dataclass(frozen=True)
class FetchPlan:
    """What the init container fetches, in order; the Secrets' names by credentials index."""

    zips: tuple[PlannedZip, ...]
    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, resolved: Sequence[tuple[Target, str, ResolvedPackage]]) -> FetchPlan:
        secrets: list[str] = []
        zips = []
        for target, what, package in resolved:
            source = package.pinned
            index = None
            if source.credentials_secret is not None:
                if source.credentials_secret not in secrets:
                    secrets.append(source.credentials_secret)
                index = secrets.index(source.credentials_secret)
            zips.append(
                PlannedZip(
                    target=target,
                    what=what,
                    bucket=source.bucket,
                    key=source.key,
                    sha256=package.sha256,
                    endpoint=source.endpoint,
                    region=source.region,
                    version_id=source.version_id,
                    credentials=index,
                )
            )
        return cls(zips=tuple(zips), secrets=tuple(secrets))

    def to_json(self) -> str:
        """Compact and stable: it is part of the pod template, so equal plans are equal text."""
        zips = [{k: v for k, v in asdict(z).items() if v is not None} for z in self.zips]
        return json.dumps(
            {"zips": zips, "secrets": list(self.secrets)}, sort_keys=True, separators=(",", ":")
        )

    @classmethod
    def from_json(cls, text: str) -> FetchPlan:
        """Raises ValueError naming what is wrong with the plan."""
        try:
            data = json.loads(text)
            zips = tuple(PlannedZip(**entry) for entry in data["zips"])
            secrets = tuple(str(name) for name in data.get("secrets", ()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"the fetch plan is not valid: {exc}") from None
        for planned in zips:
            if planned.target not in ("task", "opt"):
                raise ValueError(f"the fetch plan's target {planned.target!r} is not task or opt")
            if planned.credentials is not None and not 0 <= planned.credentials < len(secrets):
                raise ValueError(f"the fetch plan's credentials {planned.credentials} is unknown")
        return cls(zips=zips, secrets=secrets)


def credential_variable(index: int, key: str) -> str:
    """The init container's variable for ``key`` of the plan's ``index``-th Secret."""
    return f"KUBELAMBDA_S3_{index}_{key}"


def fetch_into(
    store: PackageStore,
    source: S3Object,
    access: S3Access,
    target: Path,
    *,
    what: str,
    budget: Budget,
    scratch: Path,
) -> ResolvedPackage:
    """Fetch one zip into a file under ``scratch`` (removed after) and unpack it into
    ``target``, spending ``budget``."""
    with tempfile.TemporaryFile(dir=scratch, prefix="package-") as file:
        resolved = store.fetch(source, access, file, what=what)
        file.seek(0)
        unpack(file, target, what=what, budget=budget)
    return resolved


def _empty(folder: Path) -> None:
    """Remove what is in ``folder`` (a mount point stays): a restarted init container starts
    from nothing, not from half an earlier attempt."""
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def install_plan(
    plan: FetchPlan,
    store: PackageStore,
    *,
    roots: Mapping[Target, Path],
    environ: Mapping[str, str],
    default_region: str,
    scratch: Path,
    report: Callable[[str], None] = lambda line: None,
) -> list[ResolvedPackage]:
    """Fetch and unpack every zip of ``plan`` in order, the code into ``roots["task"]`` and the
    layers into ``roots["opt"]``, all within one 250 MB budget. Credentials come from
    ``environ`` (credential_variable). Raises PackageError or PackageRefused."""
    for target in {planned.target for planned in plan.zips}:
        _empty(roots[target])
    budget = Budget()
    fetched = []
    for planned in plan.zips:
        secret = None
        if planned.credentials is not None:
            secret = {
                key: environ[name]
                for key in SECRET_KEYS
                if (name := credential_variable(planned.credentials, key)) in environ
            }
        access = secret_access(planned.source, secret, default_region=default_region)
        package = fetch_into(
            store,
            planned.source,
            access,
            roots[planned.target],
            what=planned.what,
            budget=budget,
            scratch=scratch,
        )
        fetched.append(package)
        report(f"{planned.what}: sha256 {package.sha256}, {package.size} bytes")
    report(f"unpacked {budget.used} bytes of at most {budget.limit}")
    return fetched
