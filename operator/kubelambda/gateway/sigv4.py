"""AWS Signature Version 4, as the Lambda Invoke API checks it: `verify` recomputes the
signature of a request that botocore (boto3, the aws CLI) signed, and names what is wrong.

The Invoke API calls `parse` on the Authorization header, finds the secret of its access
key, and calls `verify`. Pure functions: the clock comes in as `now`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

__all__ = ["MAX_SKEW_SECONDS", "Credential", "SignatureError", "parse", "verify"]

ALGORITHM = "AWS4-HMAC-SHA256"
# AWS refuses a request whose X-Amz-Date is more than 15 minutes from its own clock.
MAX_SKEW_SECONDS = 15 * 60


class SignatureError(Exception):
    """The request's signature cannot be accepted; `error_type` is AWS's name for why."""

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class Credential:
    """The parts of an Authorization header: who signed, for which scope, what, and how."""

    access_key: str
    date: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse(authorization: str | None) -> Credential:
    """Read `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`."""
    if not authorization:
        raise SignatureError(
            "Missing Authentication Token", error_type="MissingAuthenticationTokenException"
        )
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(
            f"Authorization header requires {ALGORITHM} (AWS Signature Version 4)",
            error_type="IncompleteSignatureException",
        )
    fields = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if eq:
            fields[name] = value
    try:
        credential = fields["Credential"].split("/")
        signed = fields["SignedHeaders"]
        signature = fields["Signature"]
    except KeyError as missing:
        raise SignatureError(
            f"Authorization header requires '{missing.args[0]}' parameter",
            error_type="IncompleteSignatureException",
        ) from None
    if len(credential) != 5 or credential[4] != "aws4_request" or not all(credential):
        raise SignatureError(
            "Credential should be scoped to a valid region, like 'us-east-1': "
            "ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request",
            error_type="IncompleteSignatureException",
        )
    return Credential(
        access_key=credential[0],
        date=credential[1],
        region=credential[2],
        service=credential[3],
        signed_headers=tuple(signed.split(";")),
        signature=signature,
    )


def _signing_key(secret: str, credential: Credential) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (credential.date, credential.region, credential.service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_request(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: Sequence[tuple[bytes, bytes]],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key in signed_headers:
            values.setdefault(key, []).append(" ".join(value.decode("latin-1").split()))
    missing = [name for name in signed_headers if name not in values]
    if missing:
        raise SignatureError(
            f"the signed header {missing[0]!r} is not in the request",
            error_type="IncompleteSignatureException",
        )
    canonical_headers = "".join(f"{name}:{','.join(values[name])}\n" for name in signed_headers)
    # The service's canonical URI is the path as sent, URI-encoded once more (not S3's rule).
    canonical_uri = quote(raw_path or "/", safe="/~")
    return "\n".join(
        [
            method,
            canonical_uri,
            _canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def verify(
    credential: Credential,
    *,
    secret: str,
    method: str,
    raw_path: str,
    query: str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    now: float,
) -> None:
    """Check the signature of a request against `secret`; raise SignatureError naming the
    problem (the date too far from `now`, the scope, the signature itself)."""
    amz_date = next((v.decode("latin-1") for k, v in headers if k.lower() == b"x-amz-date"), None)
    if amz_date is None or "x-amz-date" not in credential.signed_headers:
        raise SignatureError(
            "Authorization header requires existence of a signed 'X-Amz-Date' header",
            error_type="IncompleteSignatureException",
        )
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            f"X-Amz-Date {amz_date!r} is not of the form YYYYMMDDTHHMMSSZ",
            error_type="IncompleteSignatureException",
        ) from None
    if abs(signed_at.timestamp() - now) > MAX_SKEW_SECONDS:
        raise SignatureError(
            f"Signature expired: {amz_date} is more than 15 minutes from the gateway's time",
            error_type="InvalidSignatureException",
        )
    if credential.date != amz_date[:8]:
        raise SignatureError(
            f"Credential date {credential.date} does not match X-Amz-Date {amz_date}",
            error_type="InvalidSignatureException",
        )
    canonical = _canonical_request(
        method=method,
        raw_path=raw_path,
        query=query,
        headers=headers,
        signed_headers=credential.signed_headers,
        body=body,
    )
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, credential.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    expected = hmac.new(
        _signing_key(secret, credential), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, credential.signature):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
            error_type="InvalidSignatureException",
        )
