"""Where `kubelambda invoke` and `kubelambda logs` look for a gateway."""

from __future__ import annotations

import pytest

from kubelambda.tools.endpoints import gateway_url, port_of


@pytest.mark.parametrize(
    ("given", "environ", "expected"),
    [
        (None, {}, "http://127.0.0.1:8080"),
        (None, {"KUBELAMBDA_URL": "http://127.0.0.1:9000/"}, "http://127.0.0.1:9000"),
        ("https://gw.example.com", {"KUBELAMBDA_URL": "http://x:1"}, "https://gw.example.com"),
    ],
)
def test_the_url(given: str | None, environ: dict[str, str], expected: str) -> None:
    assert gateway_url(given, environ) == expected


@pytest.mark.parametrize(
    ("given", "environ", "message"),
    [
        ("127.0.0.1:8080", {}, "--url '127.0.0.1:8080' is not an http:// or https:// URL"),
        (None, {"KUBELAMBDA_URL": "ftp://h"}, "KUBELAMBDA_URL 'ftp://h' is not an http://"),
    ],
)
def test_a_url_that_is_not_http_is_refused(
    given: str | None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        gateway_url(given, environ)


@pytest.mark.parametrize(
    ("url", "port"),
    [("http://127.0.0.1:8081", 8081), ("http://gw", 80), ("https://gw", 443)],
)
def test_the_port(url: str, port: int) -> None:
    assert port_of(url) == port


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match="names no valid port"):
        port_of("http://h:99999")
