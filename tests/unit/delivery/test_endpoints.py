"""delivery/endpoints.py, the one reading of a queue or kafka Trigger's Secret for the operator's
probe and the dispatcher's pollers: a kafka Trigger's auth and Secret as aiokafka's security
options (SASL PLAIN and SCRAM, TLS with the Secret's authority and client certificate), each
misfit named; a queue Trigger's NATS credentials as nats.connect's arguments."""

from __future__ import annotations

import re
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import RawCredentials

from harness.pki import CertificateAuthority
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.endpoints import (
    CredentialsError,
    NatsEndpoint,
    kafka_endpoint,
    kafka_options,
    nats_endpoint,
    nats_options,
)

USER = {"username": "lambda", "password": "s3cret"}
SERVERS = ("kafka:9092",)


def options(data: dict[str, str] | None, *, tls: bool) -> dict[str, Any]:
    """A kafka Trigger's options with `data` as its Secret login's (None: no Secret)."""
    secret = None if data is None else "login"
    return kafka_options(kafka_endpoint(SERVERS, tls=tls, secret=secret, data=data))


# --- Kafka: the Secret as the client's security options ------------------------------------


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (None, {"security_protocol": "PLAINTEXT"}),
        (
            USER,
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "lambda",
                "sasl_plain_password": "s3cret",
            },
        ),
        (
            {**USER, "mechanism": "SCRAM-SHA-512"},
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
def test_plaintext_options(secret: dict[str, str] | None, expected: Any) -> None:
    assert options(secret, tls=False) == expected


def test_tls_checks_against_the_systems_authorities_without_a_ca() -> None:
    found = options(None, tls=True)
    assert found["security_protocol"] == "SSL"
    context = found["ssl_context"]
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
    found = options(secret, tls=True)
    assert found["security_protocol"] == "SASL_SSL"
    assert found["sasl_mechanism"] == "SCRAM-SHA-256"
    context = found["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    [ca] = context.get_ca_certs()
    assert ca["subject"] == ((("commonName", "kafka-test-ca"),),)
    # The certificate and key were loaded from files that are gone again.
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("secret", "tls", "problem"),
    [
        (
            {},
            False,
            "Secret login (spec.kafka.auth.secretRef) holds none of the keys username, password,"
            " mechanism, ca.crt, tls.crt, tls.key",
        ),
        ({"username": "lambda"}, False, "needs both username and password for SASL"),
        ({"password": "x"}, True, "needs both username and password for SASL"),
        ({**USER, "mechanism": "GSSAPI"}, False, "mechanism 'GSSAPI' is not one of PLAIN, SCRAM"),
        ({"mechanism": "PLAIN"}, False, "has a mechanism but no username and password"),
        ({"tls.crt": "x"}, True, "needs both tls.crt and tls.key"),
        ({"ca.crt": "x"}, False, "has ca.crt but auth.tls is false"),
        ({**USER, "tls.crt": "x", "tls.key": "y"}, False, "has tls.crt, tls.key but auth.tls"),
        ({"ca.crt": "not a certificate"}, True, "Secret login: ca.crt is not a PEM certificate"),
        ({"tls.crt": "x", "tls.key": "y"}, True, "are not a PEM certificate and its key"),
    ],
)
def test_secrets_that_do_not_fit_are_named(secret: dict[str, str], tls: bool, problem: str) -> None:
    with pytest.raises(CredentialsError, match=re.escape(problem)):
        options(secret, tls=tls)


# --- NATS: the Secret as nats.connect's arguments -------------------------------------------

CREDS = "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n"
URL = "nats://other:4222"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, {}),
        ({"creds": CREDS, "token": "t", "user": "u", "password": "p"}, {"user_credentials": CREDS}),
        ({"token": "t", "user": "u", "password": "p"}, {"token": "t"}),
        ({"user": "u", "password": "p"}, {"user": "u", "password": "p"}),
    ],
    ids=["no-secret", "creds-first", "then-token", "then-user"],
)
def test_a_queue_triggers_secret_gives_the_connections_credentials(
    data: dict[str, str] | None, expected: dict[str, str]
) -> None:
    endpoint = nats_endpoint(URL, secret=None if data is None else "n", data=data)
    assert nats_options(endpoint) == expected


def test_a_creds_text_is_handed_over_in_memory_not_as_a_file() -> None:
    given = nats_options(nats_endpoint(URL, secret="n", data={"creds": CREDS}))
    # nats-py reads a str as a file's path, a RawCredentials as the file's text.
    assert isinstance(given["user_credentials"], RawCredentials)


def test_the_platforms_broker_keeps_its_credentials_file() -> None:
    broker = BrokerSettings(url=URL, credentials_file="/etc/nats/operator.creds")
    given = nats_options(NatsEndpoint.of_broker(broker))
    assert given == {"user_credentials": "/etc/nats/operator.creds"}
    assert not isinstance(given["user_credentials"], RawCredentials)


@pytest.mark.parametrize("data", [{}, {"user": "u"}, {"password": "p"}])
def test_a_nats_secret_without_usable_keys_is_named(data: dict[str, str]) -> None:
    with pytest.raises(
        CredentialsError,
        match=re.escape(
            "Secret n (spec.queue.nats.credentialsSecret) holds none of the keys creds, token,"
            " or user and password"
        ),
    ):
        nats_endpoint(URL, secret="n", data=data)
