"""Where the developer commands find a gateway: ``--url``, else $KUBELAMBDA_URL, else local
mode's default address. ``kubelambda invoke`` calls it; ``kubelambda logs`` takes local mode's
port from it, which names the folder of its log files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_URL", "URL_VARIABLE", "gateway_url", "port_of"]

DEFAULT_URL: Final = "http://127.0.0.1:8080"  # `kubelambda local`'s default --port
URL_VARIABLE: Final = "KUBELAMBDA_URL"


def gateway_url(given: str | None, environ: Mapping[str, str]) -> str:
    """The gateway's base URL; ValueError naming the problem when it is not an http(s) URL."""
    url = given or environ.get(URL_VARIABLE) or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        source = "--url" if given else URL_VARIABLE
        raise ValueError(f"{source} {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def port_of(url: str) -> int:
    """The TCP port of ``url``, the scheme's when it names none."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} names no valid port") from None
    if port is not None:
        return port
    return 443 if parts.scheme == "https" else 80
