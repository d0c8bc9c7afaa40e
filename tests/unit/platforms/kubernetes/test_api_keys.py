"""platforms/kubernetes/api_keys.py: apiKey routes take their key from the Secret they name,
read by name only, once when it is first named and again on every refresh."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from kubelambda.api import HttpAuth, HttpSource, SecretKeyRef, Trigger
from kubelambda.platforms.kubernetes.api_keys import ApiKeySecrets
from kubelambda.platforms.kubernetes.errors import ApiError


def keyed(name: str, secret: str, namespace: str = "team-a") -> Trigger:
    auth = HttpAuth(type="apiKey", secret_ref=SecretKeyRef(name=secret, key="key"))
    return Trigger(
        name=name,
        namespace=namespace,
        function="fn",
        source=HttpSource(path=f"/{name}", auth=auth),
        delivery=None,
    )


class Secrets:
    """The API server's Secrets, and every read asked of it."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str | ApiError] = {}
        self.reads: list[tuple[str, str]] = []

    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.reads.append((namespace, name))
        value = self.values.get((namespace, name))
        if isinstance(value, ApiError):
            raise value
        if value is None:
            return None
        return {"data": {"key": base64.b64encode(value.encode()).decode(), "bad": "%%"}}


def test_named_secrets_are_read_by_name_once_then_on_every_refresh() -> None:
    server = Secrets()
    server.values[("team-a", "s1")] = "first"
    keys = ApiKeySecrets(server.get)
    triggers = [keyed("a", "s1"), keyed("b", "s1"), keyed("c", "missing")]

    async def scenario() -> None:
        assert await keys.refresh(triggers, all_of_them=False)
        assert sorted(server.reads) == [("team-a", "missing"), ("team-a", "s1")]
        assert keys.resolve("team-a", "s1", "key") == "first"
        assert keys.resolve("team-a", "s1", "bad") is None  # not base64 text
        assert keys.resolve("team-a", "missing", "key") is None

        server.reads.clear()
        server.values[("team-a", "s1")] = "rotated"
        assert not await keys.refresh(triggers, all_of_them=False)  # nothing new named
        assert server.reads == []
        assert await keys.refresh(triggers, all_of_them=True)  # the periodic refresh
        assert keys.resolve("team-a", "s1", "key") == "rotated"
        assert not await keys.refresh(triggers, all_of_them=True)

        # A passing failure keeps the last key; a refusal or a deletion drops it.
        server.values[("team-a", "s1")] = ApiError(503, "ServiceUnavailable", "busy")
        assert not await keys.refresh(triggers, all_of_them=True)
        assert keys.resolve("team-a", "s1", "key") == "rotated"
        server.values[("team-a", "s1")] = ApiError(403, "Forbidden", "no")
        assert await keys.refresh(triggers, all_of_them=True)
        assert keys.resolve("team-a", "s1", "key") is None

        # A Secret no Trigger names any more is forgotten, and not read again.
        server.values[("team-a", "s1")] = "again"
        assert await keys.refresh(triggers, all_of_them=True)
        server.reads.clear()
        assert await keys.refresh([keyed("c", "missing")], all_of_them=True)
        assert server.reads == [("team-a", "missing")]
        assert keys.resolve("team-a", "s1", "key") is None

    asyncio.run(scenario())
