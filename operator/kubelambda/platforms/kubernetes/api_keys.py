"""The API keys of HTTP Triggers with ``auth.type: apiKey``, read from the Secrets they name.

Each Secret is read by name (get), never listed or watched, so the gateway needs no right to
enumerate Secrets; ``kubelambda gateway --api-key-secrets`` reads those the Triggers name
when they appear, and all of them again every ``refresh_seconds`` so a rotated key takes
effect. `resolve` is the routing table's SecretResolver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kubelambda.api import HttpSource, Trigger
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.secrets import secret_text

__all__ = ["ApiKeySecrets", "named_secrets"]

logger = logging.getLogger(__name__)

Where = tuple[str, str]
Getter = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
"""(namespace, name) → the Secret, or None when it does not exist."""


def named_secrets(triggers: Iterable[Trigger]) -> set[Where]:
    """The Secrets (namespace, name) that apiKey Triggers take their key from."""
    found: set[Where] = set()
    for trigger in triggers:
        source = trigger.source
        if isinstance(source, HttpSource) and source.auth.secret_ref is not None:
            found.add((trigger.namespace, source.auth.secret_ref.name))
    return found


class ApiKeySecrets:
    def __init__(self, get: Getter) -> None:
        self._get = get
        # None: read and found missing or forbidden (routes naming it refuse every request).
        self._values: dict[Where, dict[str, str] | None] = {}

    def resolve(self, namespace: str, name: str, key: str) -> str | None:
        values = self._values.get((namespace, name))
        return values.get(key) if values is not None else None

    async def refresh(self, triggers: Iterable[Trigger], *, all_of_them: bool) -> bool:
        """Read the Secrets the Triggers name (only those not read yet, unless
        `all_of_them`) and forget the others; whether any key changed."""
        wanted = named_secrets(triggers)
        changed = False
        for gone in self._values.keys() - wanted:
            del self._values[gone]
            changed = True
        reading = sorted(wanted if all_of_them else wanted - self._values.keys())
        answers = await asyncio.gather(*(self._read(where) for where in reading))
        for where, (ok, values) in zip(reading, answers, strict=True):
            if ok and self._values.get(where, ...) != values:
                self._values[where] = values
                changed = True
        return changed

    async def _read(self, where: Where) -> tuple[bool, dict[str, str] | None]:
        """(read, its values); not read on a passing failure, so the last values stay."""
        namespace, name = where
        try:
            secret = await self._get(namespace, name)
        except ApiError as exc:
            if exc.status == 403:
                logger.warning(
                    "API key Secret %s/%s cannot be read (forbidden): its routes refuse every"
                    " request; install the chart with gateway.readApiKeySecrets=true",
                    namespace,
                    name,
                )
                return True, None
            logger.warning("API key Secret %s/%s not read, will retry: %s", namespace, name, exc)
            return False, None
        if secret is None:
            logger.warning(
                "API key Secret %s/%s does not exist: its routes refuse every request",
                namespace,
                name,
            )
            return True, None
        return True, secret_text(secret)
