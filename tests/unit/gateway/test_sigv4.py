"""gateway/sigv4.py against botocore's own signer: what boto3 and the aws CLI sign verifies,
and every change to a signed part (or the wrong secret, or a stale date) is refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kubelambda.gateway import sigv4

KEY, SECRET = "AKIAKUBELAMBDATEST01", "s3cr3t/with+chars"


def signed(
    path: str = "/2015-03-31/functions/hello/invocations",
    *,
    body: bytes = b'{"a": 1}',
    query: str = "",
    secret: str = SECRET,
    headers: dict[str, str] | None = None,
) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """What botocore sends for an Invoke call: (raw path, query, headers, body)."""
    url = f"http://127.0.0.1:8080{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method="POST", url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(KEY, secret), "lambda", "us-east-1").add_auth(request)
    sent = [
        (k.lower().encode(), v.encode() if isinstance(v, str) else v)
        for k, v in request.headers.items()
    ]
    sent.append((b"host", b"127.0.0.1:8080"))
    parts = urlsplit(request.url)
    return parts.path, parts.query, sent, body


def check(
    path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes, *, skew: float = 0
) -> None:
    """Verify as the gateway would, its clock `skew` seconds from the signer's."""
    authorization = next(v.decode() for k, v in headers if k == b"authorization")
    credential = sigv4.parse(authorization)
    assert credential.access_key == KEY
    sigv4.verify(
        credential,
        secret=SECRET,
        method="POST",
        raw_path=path,
        query=query,
        headers=headers,
        body=body,
        now=time.time() + skew,
    )


def test_what_botocore_signs_verifies() -> None:
    check(*signed())


def test_an_arn_function_name_and_a_qualifier_verify() -> None:
    # boto3 percent-encodes ':' in the path; the canonical URI encodes it once more.
    arn = quote("arn:aws:lambda:us-east-1:000000000000:function:team-b.echo", safe="")
    check(*signed(f"/2015-03-31/functions/{arn}/invocations", query="Qualifier=%24LATEST"))


def test_signed_invocation_headers_verify() -> None:
    check(*signed(headers={"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "Tail"}))


Tamper = Callable[[str, str, list[tuple[bytes, bytes]], bytes], tuple]


@pytest.mark.parametrize(
    ("tamper", "error_type"),
    [
        (lambda p, q, h, b: (p, q, h, b + b" "), "InvalidSignatureException"),
        (lambda p, q, h, b: (p.replace("hello", "other"), q, h, b), "InvalidSignatureException"),
        (lambda p, q, h, b: (p, "Qualifier=1", h, b), "InvalidSignatureException"),
        (
            lambda p, q, h, b: (p, q, [x for x in h if x[0] != b"x-amz-date"], b),
            "IncompleteSignatureException",
        ),
        (
            lambda p, q, h, b: (p, q, [(k, v) for k, v in h if k != b"host"], b),
            "IncompleteSignatureException",
        ),
    ],
    ids=["body", "function", "query", "no-date", "signed-header-missing"],
)
def test_any_change_to_what_was_signed_is_refused(tamper: Tamper, error_type: str) -> None:
    with pytest.raises(sigv4.SignatureError) as refused:
        check(*tamper(*signed()))
    assert refused.value.error_type == error_type


def test_the_wrong_secret_is_refused() -> None:
    with pytest.raises(sigv4.SignatureError, match="does not match the signature you provided"):
        check(*signed(secret="not-the-secret"))


@pytest.mark.parametrize("skew", [-16 * 60, 16 * 60])
def test_a_date_over_15_minutes_away_is_refused(skew: float) -> None:
    with pytest.raises(sigv4.SignatureError, match="Signature expired"):
        check(*signed(), skew=skew)


@pytest.mark.parametrize(
    ("authorization", "error_type"),
    [
        (None, "MissingAuthenticationTokenException"),
        ("", "MissingAuthenticationTokenException"),
        ("Bearer abc", "IncompleteSignatureException"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", "IncompleteSignatureException"),
        (
            "AWS4-HMAC-SHA256 Credential=AK/2026/us-east-1, SignedHeaders=host, Signature=00",
            "IncompleteSignatureException",
        ),
    ],
)
def test_malformed_authorization_is_named(authorization: str | None, error_type: str) -> None:
    with pytest.raises(sigv4.SignatureError) as refused:
        sigv4.parse(authorization)
    assert refused.value.error_type == error_type
