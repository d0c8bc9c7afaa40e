"""platforms/kubernetes/kubeconfig.py without a server: each way a kubeconfig names the server,
its CA, a client certificate and a token; a rotated token file; the in-cluster service account;
$KUBECONFIG lists; the lookup order; and an ``exec`` user handed to the official loader."""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.pki import CertificateAuthority, KeyPair
from kubelambda.platforms.kubernetes.kubeconfig import (
    ConnectionSettings,
    KubeconfigError,
    TokenFile,
    load,
)

SERVER = "https://10.0.0.1:6443"


@dataclass(frozen=True)
class Pki:
    ca: Path
    client: KeyPair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    authority = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    return Pki(ca=authority.pair.cert, client=authority.issue("me", common_name="me", client=True))


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(
    path: Path, *, cluster: dict[str, Any], user: dict[str, Any] | None = None, name: str = "c"
) -> Path:
    context: dict[str, Any] = {"cluster": name}
    if user is not None:
        context["user"] = name
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "contexts": [{"name": name, "context": context}],
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}] if user is not None else [],
    }
    path.write_text(yaml.safe_dump(document))
    return path


Case = tuple[
    Callable[[Pki], dict[str, Any]],  # the cluster
    Callable[[Pki], dict[str, Any] | None],  # the user
    Callable[[Pki], dict[str, Any]],  # the expected settings' fields
]
CASES: dict[str, Case] = {
    "server and CA data": (
        lambda p: {"server": SERVER + "/", "certificate-authority-data": _b64(p.ca)},
        lambda p: None,
        lambda p: {"server": SERVER, "ca_data": p.ca.read_bytes(), "ca_path": None},
    ),
    "CA file, relative to the kubeconfig": (
        lambda p: {"server": SERVER, "certificate-authority": f"{p.ca.parent.name}/ca.crt"},
        lambda p: None,
        lambda p: {"ca_path": str(p.ca), "ca_data": None},
    ),
    "client certificate and key data": (
        lambda p: {"server": SERVER, "certificate-authority-data": _b64(p.ca)},
        lambda p: {
            "client-certificate-data": _b64(p.client.cert),
            "client-key-data": _b64(p.client.key),
        },
        lambda p: {
            "cert_data": p.client.cert.read_bytes(),
            "key_data": p.client.key.read_bytes(),
            "cert_path": None,
            "key_path": None,
        },
    ),
    "client certificate and key files": (
        lambda p: {"server": SERVER, "certificate-authority": str(p.ca)},
        lambda p: {"client-certificate": str(p.client.cert), "client-key": str(p.client.key)},
        lambda p: {"cert_path": str(p.client.cert), "key_path": str(p.client.key)},
    ),
    "token": (
        lambda p: {"server": SERVER, "certificate-authority": str(p.ca)},
        lambda p: {"token": "abc"},
        lambda p: {"authorization": "Bearer abc"},
    ),
    "no user: no credentials": (
        lambda p: {"server": SERVER, "certificate-authority": str(p.ca)},
        lambda p: None,
        lambda p: {"authorization": None, "cert_path": None, "cert_data": None},
    ),
    "insecure-skip-tls-verify": (
        lambda p: {"server": SERVER, "insecure-skip-tls-verify": True},
        lambda p: {"token": "abc"},
        lambda p: {"insecure": True, "verify_mode": ssl.CERT_NONE},
    ),
    "tls-server-name": (
        lambda p: {"server": SERVER, "certificate-authority": str(p.ca), "tls-server-name": "k"},
        lambda p: None,
        lambda p: {"tls_server_name": "k", "verify_mode": ssl.CERT_REQUIRED},
    ),
    "plain http: no TLS read": (
        lambda p: {"server": "http://127.0.0.1:8001", "certificate-authority": "/missing"},
        lambda p: None,
        lambda p: {"server": "http://127.0.0.1:8001", "ca_path": None},
    ),
}


def _fields(settings: ConnectionSettings) -> dict[str, Any]:
    fields = dict(vars(settings))
    fields["authorization"] = settings.authorization()
    if settings.server.startswith("https"):
        # Builds the TLS context for real: a bad CA, certificate or key raises here.
        fields["verify_mode"] = settings.ssl_context().verify_mode
    return fields


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_kubeconfig_gives_the_connection_settings(case: Case, pki: Pki, tmp_path: Path) -> None:
    cluster, user, expected = case
    # The kubeconfig sits beside the pki folder, so a relative path can name the CA.
    path = _kubeconfig(pki.ca.parent.parent / "kubeconfig", cluster=cluster(pki), user=user(pki))
    fields = _fields(load(path, environ={}, home=tmp_path))
    wanted = expected(pki)
    assert {key: fields[key] for key in wanted} == wanted


def test_a_token_file_is_read_again_when_it_changes_and_every_minute(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    now = [0.0]
    token = TokenFile(str(path), clock=lambda: now[0])
    assert token() == "Bearer first"
    path.write_text("second-token")  # another size: the stat differs at once
    assert token() == "Bearer second-token"
    before = path.stat()
    path.write_text("third--token")  # same size, inode and (restored) mtime: the stat is equal
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    now[0] = 59.0
    assert token() == "Bearer second-token"
    now[0] = 60.0
    assert token() == "Bearer third--token"
    path.unlink()  # mid-rotation: the last token stays
    now[0] = 200.0
    assert token() == "Bearer third--token"


def test_a_kubeconfig_token_file_is_relative_and_rotated(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("one")
    path = _kubeconfig(
        tmp_path / "config", cluster={"server": "http://127.0.0.1:1"}, user={"tokenFile": "token"}
    )
    settings = load(path, environ={})
    assert settings.authorization() == "Bearer one"
    (tmp_path / "token").write_text("two-two")
    assert settings.authorization() == "Bearer two-two"


def _service_account(directory: Path, *, ca: Path) -> Path:
    directory.mkdir()
    (directory / "token").write_text("sa-token")
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    return directory


@pytest.mark.parametrize(
    ("host", "server"),
    [("10.96.0.1", "https://10.96.0.1:443"), ("fd00::1", "https://[fd00::1]:443")],
)
def test_in_cluster_from_the_environment_and_the_service_account(
    host: str, server: str, pki: Pki, tmp_path: Path
) -> None:
    account = _service_account(tmp_path / "sa", ca=pki.ca)
    environ = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443"}
    settings = load(environ=environ, service_account=account, home=tmp_path)
    assert (settings.server, settings.ca_path) == (server, str(account / "ca.crt"))
    assert settings.authorization() == "Bearer sa-token"
    settings.ssl_context()


def test_the_lookup_order(pki: Pki, tmp_path: Path) -> None:
    """An explicit file, then $KUBECONFIG, then the service account, then ~/.kube/config."""
    (tmp_path / ".kube").mkdir()
    _kubeconfig(tmp_path / ".kube" / "config", cluster={"server": "http://home:1"})
    listed = _kubeconfig(tmp_path / "listed", cluster={"server": "http://listed:1"})
    explicit = _kubeconfig(tmp_path / "explicit", cluster={"server": "http://explicit:1"})
    account = _service_account(tmp_path / "sa", ca=pki.ca)
    pod = {"KUBERNETES_SERVICE_HOST": "pod", "KUBERNETES_SERVICE_PORT": "443"}
    both = {**pod, "KUBECONFIG": str(listed)}

    def server(path: Path | None, environ: dict[str, str]) -> str:
        return load(path, environ=environ, service_account=account, home=tmp_path).server

    assert server(explicit, both) == "http://explicit:1"
    assert server(None, both) == "http://listed:1"
    assert server(None, pod) == "https://pod:443"
    assert server(None, {}) == "http://home:1"
    assert server(None, {"KUBECONFIG": ""}) == "http://home:1"


def test_a_kubeconfig_list_merges_as_kubectl_does(tmp_path: Path) -> None:
    """Missing files are skipped, the first current-context wins, and so does the first
    definition of each cluster or user name."""
    first = tmp_path / "first"
    first.write_text(
        yaml.safe_dump(
            {"clusters": [{"name": "c", "cluster": {"server": "http://first:1"}}], "users": []}
        )
    )
    second = _kubeconfig(tmp_path / "second", cluster={"server": "http://second:1"}, user={})
    third = tmp_path / "third"
    third.write_text(yaml.safe_dump({"current-context": "elsewhere"}))
    listed = os.pathsep.join([str(tmp_path / "missing"), str(first), str(second), str(third)])
    settings = load(environ={"KUBECONFIG": listed}, home=tmp_path)
    assert settings.server == "http://first:1"


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (None, "does not exist"),
        ({"clusters": []}, "no current-context"),
        ({"current-context": "x"}, "no context named 'x'"),
        (
            {"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "y"}}]},
            "no cluster named 'y'",
        ),
    ],
)
def test_a_broken_kubeconfig_says_what_is_wrong(
    document: dict[str, Any] | None, error: str, tmp_path: Path
) -> None:
    path = tmp_path / "config"
    if document is not None:
        path.write_text(yaml.safe_dump(document))
    with pytest.raises(KubeconfigError, match=error):
        load(path, environ={})


def test_an_exec_user_goes_to_the_official_loader(pki: Pki, tmp_path: Path) -> None:
    api_version = "client.authentication.k8s.io/v1beta1"
    credential = {"apiVersion": api_version, "kind": "ExecCredential", "status": {"token": "x1"}}
    plugin = {
        "apiVersion": api_version,
        "command": sys.executable,
        "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
    }
    path = _kubeconfig(
        tmp_path / "config",
        cluster={"server": SERVER, "certificate-authority-data": _b64(pki.ca)},
        user={"exec": plugin},
    )
    settings = load(path, environ={})
    assert settings.authorization() == "Bearer x1"
    assert settings.server == SERVER
    # The official loader writes the CA data to a file of its own.
    assert settings.ca_path and Path(settings.ca_path).read_bytes() == pki.ca.read_bytes()
