"""dispatcher/kafka_client.py: a kafka Trigger's auth and Secret as the client's security settings
(SASL PLAIN and SCRAM, TLS with the Secret's authority and client certificate), each misfit named;
and what a cluster that cannot be reached runs into."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest

from harness.pki import CertificateAuthority
from kubelambda.dispatcher.kafka_client import client_options, described, why_unreachable
from support.waiting import free_port

USER = {"username": "lambda", "password": "s3cret"}


@pytest.mark.parametrize(
    ("secret", "tls", "expected"),
    [
        (None, False, {"security_protocol": "PLAINTEXT"}),
        (
            USER,
            False,
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "lambda",
                "sasl_plain_password": "s3cret",
            },
        ),
        (
            {**USER, "mechanism": "SCRAM-SHA-512"},
            False,
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "lambda",
                "sasl_plain_password": "s3cret",
            },
        ),
    ],
    ids=["nothing", "plain", "scram"],
)
def test_plaintext_settings(secret: dict[str, str] | None, tls: bool, expected: Any) -> None:
    assert client_options(secret, tls=tls, secret_name="login") == expected


def test_tls_checks_against_the_systems_authorities_without_a_ca() -> None:
    options = client_options(None, tls=True)
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_sasl_over_tls_with_the_secrets_authority_and_client_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    authority = CertificateAuthority(tmp_path, name="kafka-test-ca")
    client = authority.issue("client", common_name="lambda", client=True)
    secret = {
        **USER,
        "mechanism": "SCRAM-SHA-256",
        "ca.crt": authority.pair.cert.read_text(),
        "tls.crt": client.cert.read_text(),
        "tls.key": client.key.read_text(),
    }
    options = client_options(secret, tls=True, secret_name="login")
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    [ca] = context.get_ca_certs()
    assert ca["subject"] == ((("commonName", "kafka-test-ca"),),)
    # The certificate and key were loaded from files that are gone again.
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("secret", "tls", "problem"),
    [
        ({}, False, "Secret login holds none of the keys username, password, mechanism"),
        ({"username": "lambda"}, False, "needs both username and password for SASL"),
        ({"password": "x"}, True, "needs both username and password for SASL"),
        ({**USER, "mechanism": "GSSAPI"}, False, "mechanism 'GSSAPI' is not one of PLAIN, SCRAM"),
        ({"mechanism": "PLAIN"}, False, "has a mechanism but no username and password"),
        ({"tls.crt": "x"}, True, "needs both tls.crt and tls.key"),
        ({"ca.crt": "x"}, False, "has ca.crt but auth.tls is false"),
        ({**USER, "tls.crt": "x", "tls.key": "y"}, False, "has tls.crt, tls.key but auth.tls"),
        ({"ca.crt": "not a certificate"}, True, "ca.crt is not a PEM certificate"),
        ({"tls.crt": "x", "tls.key": "y"}, True, "are not a PEM certificate and its key"),
    ],
)
def test_secrets_that_do_not_fit_are_named(secret: dict[str, str], tls: bool, problem: str) -> None:
    with pytest.raises(LookupError, match=problem):
        client_options(secret, tls=tls, secret_name="login")


def test_why_a_cluster_cannot_be_reached() -> None:
    server = f"127.0.0.1:{free_port()}"
    why = asyncio.run(why_unreachable((server,), {}, seconds=5))
    assert why is not None and why.startswith(f"{server}: ")
    assert "Connect call failed" in why or "refused" in why.lower()


def test_exceptions_are_described_once() -> None:
    assert described(TimeoutError()) == "no answer in time"
    assert described(ValueError("bad")) == "ValueError: bad"
    assert described(RuntimeError()) == "RuntimeError"
