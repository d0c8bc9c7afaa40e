"""Pins a Function's deployment package and layers before any pod starts: each zip on S3 is read
once per Function generation (central directory checked, SHA-256 and version pinned, with the
credentials of its Secret), so a refusal is a condition on the Function, not a failing pod.

The Function reconciler calls ``package_fetch``; the Deployment records the plan it returns.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from typing import Any

from kubelambda.api import Function
from kubelambda.api.fetchplan import FetchPlan
from kubelambda.api.function import S3Object
from kubelambda.api.packages import (
    SECRET_KEYS,
    PackageError,
    PackageStore,
    ResolvedPackage,
    S3Access,
    Target,
    function_zips,
    secret_access,
)
from kubelambda.api.unpack import UNZIPPED_LIMIT, PackageRefused
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.packages import PackageFetch, recorded_plan
from kubelambda.controller.resources.status import Blocked
from kubelambda.platforms.kubernetes.kinds import SECRET

__all__ = ["PackagesBlocked", "package_fetch"]


class PackagesBlocked(Exception):
    """A zip cannot be pinned now; ``recheck``: looking again later may succeed unchanged."""

    def __init__(self, blocked: Blocked, *, recheck: bool = False) -> None:
        super().__init__(blocked.message)
        self.blocked = blocked
        self.recheck = recheck


async def package_fetch(
    function: Function,
    *,
    owner: Owner,
    generation: int | None,
    live: Mapping[str, Any] | None,
    cluster: Cluster,
    store: PackageStore,
    fetch_image: str | None,
    region: str,
) -> PackageFetch:
    """The plan of the zips the pods fetch: the one ``live`` (the Deployment) records for this
    generation, or each zip read now. Raises PackagesBlocked."""
    if fetch_image is None:
        raise PackagesBlocked(
            Blocked(
                "FetchImageUnset",
                "spec.code.s3 and spec.layers are fetched by an init container, and the"
                " operator was started without --fetch-image (the Helm chart sets it)",
            )
        )
    plan = recorded_plan(live, generation=generation)
    if plan is None:
        resolved: list[tuple[Target, str, ResolvedPackage]] = []
        for target, what, source in function_zips(function):
            access = await _access(cluster, owner.namespace, source, what, region)
            resolved.append((target, what, await _resolve(store, source, access, what)))
        unzipped = sum(package.unzipped for _, _, package in resolved)
        if unzipped > UNZIPPED_LIMIT:
            raise PackagesBlocked(
                Blocked(
                    "PackageTooLarge",
                    f"spec.code.s3 and spec.layers declare {unzipped} bytes unpacked together;"
                    f" Lambda's limit is {UNZIPPED_LIMIT} (250 MB)",
                )
            )
        plan = FetchPlan.of(resolved)
    return PackageFetch(plan=plan, image=fetch_image, region=region, generation=generation)


async def _access(
    cluster: Cluster, namespace: str, source: S3Object, what: str, region: str
) -> S3Access:
    if source.credentials_secret is None:
        return secret_access(source, None, default_region=region)
    name = source.credentials_secret
    secret = await cluster.get(SECRET, namespace=namespace, name=name)
    if secret is None:
        raise PackagesBlocked(
            Blocked(
                "CredentialsNotFound",
                f"{what}: Secret {name} (credentialsSecret) does not exist in namespace"
                f" {namespace}",
            ),
            recheck=True,
        )
    data = secret.get("data") or {}
    values: dict[str, str] = {}
    for key in SECRET_KEYS:
        if key in data:
            try:
                values[key] = base64.b64decode(data[key], validate=True).decode()
            except (binascii.Error, ValueError):
                continue  # reported below when it is a key that must be there
    missing = [key for key in SECRET_KEYS[:2] if key not in values]
    if missing:
        raise PackagesBlocked(
            Blocked(
                "CredentialsInvalid",
                f"{what}: Secret {name} has no {' or '.join(missing)} (it needs"
                " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and may hold AWS_REGION)",
            ),
            recheck=True,
        )
    return secret_access(source, values, default_region=region)


async def _resolve(
    store: PackageStore, source: S3Object, access: S3Access, what: str
) -> ResolvedPackage:
    try:
        return await asyncio.to_thread(store.resolve, source, access, what=what)
    except PackageRefused as exc:
        raise PackagesBlocked(Blocked(exc.reason, str(exc))) from None
    except PackageError as exc:
        raise PackagesBlocked(Blocked(exc.reason, str(exc)), recheck=exc.transient) from None
