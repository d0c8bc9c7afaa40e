"""A Trigger with a JWT authorizer, served by ``kubelambda local`` (a real gateway in front of a
real runtime): the gateway finds the issuer's keys by OpenID discovery on a loopback issuer,
refuses bad tokens before the function runs, and hands the claims of good ones to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from support.local import LocalMode
from support.waiting import free_port

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: orders}}
spec:
  runtime: python3.12
  handler: app.handler
  scaling: {{maxReplicas: 1}}
  code:
    inline:
      files:
        app.py: |
          import json

          CALLS = 0


          def handler(event, context):
              global CALLS
              CALLS += 1
              context_ = event["requestContext"]
              return {{"calls": CALLS, "authorizer": context_.get("authorizer")}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: orders}}
spec:
  function: orders
  http:
    path: /orders
    auth:
      type: jwt
      jwt:
        issuer: {issuer}
        audience: [orders-api]
        scopes: [orders:read]
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {{name: orders-issuer-down}}
spec:
  function: orders
  http:
    path: /down
    auth:
      type: jwt
      jwt:
        issuer: {issuer}
        audience: [orders-api]
        jwksUrl: {down}
"""


class Issuer:
    """An OpenID provider on loopback: its configuration and its key set, each GET counted."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                documents = {
                    "/.well-known/openid-configuration": {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/keys",
                    },
                    "/keys": {
                        "keys": [
                            {**RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1"}
                        ]
                    },
                }
                if self.path not in documents:
                    self.send_error(404)
                    return
                body = json.dumps(documents[self.path]).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, **claims: Any) -> str:
        payload = {"iss": self.url, "aud": "orders-api", "exp": int(time.time()) + 300, **claims}
        return jwt.encode(payload, KEY, algorithm="RS256", headers={"kid": "k1"})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    running = Issuer()
    yield running
    running.stop()


@pytest.fixture
def served(local_mode: Callable[..., LocalMode], issuer: Issuer) -> LocalMode:
    # Nothing listens on `down`: that route's issuer is unreachable.
    down = f"http://127.0.0.1:{free_port()}/keys"
    return local_mode(MANIFEST.format(issuer=issuer.url, down=down))


def get(local: LocalMode, path: str, token: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return local.client.get(path, headers=headers)


def test_bad_tokens_are_refused_before_the_function_runs(served: LocalMode, issuer: Issuer) -> None:
    missing = get(served, "/orders")
    assert (missing.status_code, missing.content) == (401, b'{"message":"Unauthorized"}')
    assert missing.headers["www-authenticate"] == 'Bearer scope="orders:read"'

    for token in (
        issuer.token(aud="billing-api", scope="orders:read"),
        issuer.token(exp=int(time.time()) - 120, scope="orders:read"),
        issuer.token(iss="http://127.0.0.1:1", scope="orders:read"),
        "not.a.token",
    ):
        refused = get(served, "/orders", token)
        assert (refused.status_code, refused.content) == (401, b'{"message":"Unauthorized"}')
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]

    unscoped = get(served, "/orders", issuer.token(scope="profile"))
    assert (unscoped.status_code, unscoped.content) == (403, b'{"message":"Forbidden"}')

    good = get(
        served, "/orders", issuer.token(sub="user-1", scope="orders:read", groups=["a", "b"])
    )
    assert good.status_code == 200, good.text
    answer = good.json()
    assert answer["calls"] == 1  # the first invocation: no refused request reached it
    claims = answer["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "user-1"
    assert claims["iss"] == issuer.url
    assert claims["groups"] == "[a b]"
    assert claims["exp"].isdigit()  # numbers reach the function as strings, as on AWS
    assert answer["authorizer"]["jwt"]["scopes"] == ["orders:read"]
    # Discovery, then the key set, once: every later token used the cached key.
    assert issuer.requests == ["/.well-known/openid-configuration", "/keys"]


def test_an_unreachable_issuer_means_401_and_a_log_line(served: LocalMode, issuer: Issuer) -> None:
    refused = get(served, "/down", issuer.token())
    assert (refused.status_code, refused.content) == (401, b'{"message":"Unauthorized"}')
    line = served.wait_for_line("JWT keys from http://127.0.0.1:")
    assert "could not be fetched" in line
    # The gateway is fine: the other route still answers.
    assert get(served, "/orders", issuer.token(scope="orders:read")).status_code == 200
