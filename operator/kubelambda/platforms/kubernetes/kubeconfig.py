"""Where the API server is and how this process authenticates, read without the official
client: ``client.KubeClient.from_config`` calls ``load`` and sends its requests with the result.

The official ``kubernetes`` package costs 43 MiB of model classes once imported, so it is
imported only for what this module does not handle: users with an ``exec`` plugin, an
``auth-provider`` or a username and password go to its loader, as before.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["ConnectionSettings", "KubeconfigError", "TokenFile", "in_cluster", "load"]

SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Fields of a kubeconfig user that only the official loader understands.
_PLUGIN_FIELDS: Final = ("exec", "auth-provider", "username", "password")
Authorization = Callable[[], str | None]
"""The Authorization header's value for the next request, or None: asked on every request."""


class KubeconfigError(Exception):
    """No usable configuration: no kubeconfig, no service account, or a broken one."""


def _anonymous() -> str | None:
    return None


@dataclass(frozen=True)
class ConnectionSettings:
    """The API server's URL, what to trust, what to present. Each of CA, certificate and key
    comes as a file path or as PEM data, never both (kopf's login refuses both)."""

    server: str
    ca_path: str | None = None
    ca_data: bytes | None = None
    cert_path: str | None = None
    cert_data: bytes | None = None
    key_path: str | None = None
    key_data: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    authorization: Authorization = _anonymous

    def ssl_context(self) -> ssl.SSLContext:
        """TLS for this server: its CA (or the system's), the client certificate if any."""
        context = ssl.create_default_context(
            cafile=self.ca_path, cadata=self.ca_data.decode("ascii") if self.ca_data else None
        )
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert = self.cert_path or self.cert_data
        key = self.key_path or self.key_data
        if cert and key:
            with contextlib.ExitStack() as stack:
                context.load_cert_chain(
                    certfile=cert if isinstance(cert, str) else stack.enter_context(_private(cert)),
                    keyfile=key if isinstance(key, str) else stack.enter_context(_private(key)),
                )
        return context


@contextlib.contextmanager
def _private(data: bytes) -> Iterator[str]:
    """``data`` as a path only this process reads, while the block runs (ssl loads a certificate
    chain only from files): an anonymous memory file on Linux, else a 0600 temp file."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("kubelambda-tls")
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="kubelambda-tls-")
    try:
        os.write(fd, data)
        os.close(fd)
        yield path
    finally:
        os.unlink(path)


class TokenFile:
    """A bearer token kept in a file and read again when the file changes (a service-account
    token is rotated by swapping a symlink) or ``period`` seconds after the last read. Each
    request costs one stat; a file that is briefly missing or empty keeps the last token."""

    def __init__(
        self, path: str, *, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._period = period
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._stamp = self._stat()
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise KubeconfigError(f"cannot read the token file {path}: {exc}") from exc
        if not token:
            raise KubeconfigError(f"the token file {path} is empty")
        self._token = token
        self._read_at = clock()

    def _stat(self) -> tuple[int, int, int, int]:
        found = os.stat(self.path)
        return (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)

    def __call__(self) -> str:
        now = self._clock()
        try:
            stamp = self._stat()
        except OSError:
            return f"Bearer {self._token}"
        if stamp != self._stamp or now - self._read_at >= self._period:
            with self._lock:
                with contextlib.suppress(OSError):
                    self._token = Path(self.path).read_text().strip() or self._token
                self._stamp, self._read_at = stamp, now
        return f"Bearer {self._token}"


def load(
    kubeconfig: Path | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account: Path = SERVICE_ACCOUNT,
    home: Path | None = None,
) -> ConnectionSettings:
    """From ``kubeconfig``; without one, from $KUBECONFIG, the in-cluster service account
    (inside a pod) or ~/.kube/config, in that order, as kubectl does.

    $KUBECONFIG lists files (colon-separated); as kubectl does, missing ones are skipped, the
    first file that sets ``current-context`` names it, and each context, cluster and user is
    the first one of that name in the list (the official client lets a later file's
    ``current-context`` win instead)."""
    if kubeconfig is not None:
        return _from_files([Path(kubeconfig)], source=str(kubeconfig), skip_missing=False)
    listed = environ.get("KUBECONFIG")
    if listed:
        paths = [Path(part).expanduser() for part in listed.split(os.pathsep) if part]
        return _from_files(paths, source=listed, skip_missing=True)
    with contextlib.suppress(KubeconfigError):  # not in a pod
        return in_cluster(environ=environ, service_account=service_account)
    default = (home or Path.home()) / ".kube" / "config"
    return _from_files([default], source=str(default), skip_missing=True)


def in_cluster(
    *, environ: Mapping[str, str] = os.environ, service_account: Path = SERVICE_ACCOUNT
) -> ConnectionSettings:
    """The pod's service account: the API server's Service from the environment, its token
    (re-read as the kubelet rotates it) and CA from ``service_account``."""
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("not in a pod: KUBERNETES_SERVICE_HOST/PORT are not set")
    token = TokenFile(str(service_account / "token"))
    ca = service_account / "ca.crt"
    if not ca.is_file() or ca.stat().st_size == 0:
        raise KubeconfigError(f"the service account's CA {ca} is missing or empty")
    # As Go's net.JoinHostPort: an IPv6 address goes in brackets.
    address = f"[{host}]:{port}" if ":" in host or "%" in host else f"{host}:{port}"
    return ConnectionSettings(server=f"https://{address}", ca_path=str(ca), authorization=token)


@dataclass
class _Merged:
    current: str | None
    # name -> (entry, directory of the file that defined it: relative paths start there)
    entries: dict[str, dict[str, tuple[Mapping[str, Any], str]]]


def _merge(paths: Sequence[Path], *, skip_missing: bool) -> _Merged:
    merged = _Merged(current=None, entries={"clusters": {}, "contexts": {}, "users": {}})
    found = False
    for path in paths:
        try:
            text = path.read_text()
        except FileNotFoundError:
            if skip_missing:
                continue
            raise KubeconfigError(f"kubeconfig {path} does not exist") from None
        document = yaml.safe_load(text)
        if not isinstance(document, dict):
            raise KubeconfigError(f"kubeconfig {path} is empty or not a mapping")
        found = True
        base = str(path.resolve().parent)
        merged.current = merged.current or document.get("current-context") or None
        for section, named in merged.entries.items():
            for item in document.get(section) or []:
                if isinstance(item, dict) and "name" in item:
                    field = section[:-1]  # "clusters" -> "cluster"
                    named.setdefault(str(item["name"]), (item.get(field) or {}, base))
    if not found:
        raise KubeconfigError(f"no kubeconfig found in {', '.join(map(str, paths))}")
    return merged


def _from_files(paths: Sequence[Path], *, source: str, skip_missing: bool) -> ConnectionSettings:
    merged = _merge(paths, skip_missing=skip_missing)
    if not merged.current:
        raise KubeconfigError(f"{source}: no current-context")
    context = _named(merged, "contexts", name=merged.current, source=source)[0]
    cluster, cluster_base = _named(
        merged, "clusters", name=str(context.get("cluster")), source=source
    )
    user: Mapping[str, Any] = {}
    user_base = cluster_base
    if context.get("user"):
        user, user_base = _named(merged, "users", name=str(context["user"]), source=source)
    if any(field in user for field in _PLUGIN_FIELDS):
        return _official(source, context=merged.current)
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"{source}: cluster {context.get('cluster')} has no server")
    settings: dict[str, Any] = {}
    if server.startswith("https"):  # the official loader reads no TLS for plain http
        for field, key, entry, base in (
            ("ca", "certificate-authority", cluster, cluster_base),
            ("cert", "client-certificate", user, user_base),
            ("key", "client-key", user, user_base),
        ):
            settings[f"{field}_path"], settings[f"{field}_data"] = _file_or_data(
                entry, key, base=base
            )
    authorization: Authorization = _anonymous
    if user.get("token"):
        header = f"Bearer {str(user['token']).strip()}"
        authorization = lambda: header  # noqa: E731
    elif user.get("tokenFile"):
        authorization = TokenFile(os.path.normpath(os.path.join(user_base, user["tokenFile"])))
    return ConnectionSettings(
        server=server,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
        authorization=authorization,
        **settings,
    )


def _named(
    merged: _Merged, section: str, *, name: str, source: str
) -> tuple[Mapping[str, Any], str]:
    try:
        return merged.entries[section][name]
    except KeyError:
        raise KubeconfigError(f"{source}: no {section[:-1]} named {name!r}") from None


def _file_or_data(
    entry: Mapping[str, Any], key: str, *, base: str
) -> tuple[str | None, bytes | None]:
    """``key-data`` (base64, preferred, as the official loader does) or the file ``key``."""
    if entry.get(f"{key}-data"):
        try:
            return None, base64.b64decode(entry[f"{key}-data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KubeconfigError(f"{key}-data is not base64: {exc}") from None
    if entry.get(key):
        path = os.path.normpath(os.path.join(base, os.path.expanduser(str(entry[key]))))
        if not os.path.isfile(path):
            raise KubeconfigError(f"{key} {path} does not exist")
        return path, None
    return None, None


def _official(source: str, *, context: str) -> ConnectionSettings:
    """The official loader, for users with a credential plugin; its 43 MiB load only here."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=source, context=context, client_configuration=configuration
        )
    except config.ConfigException as exc:
        raise KubeconfigError(f"{source}: {exc}") from exc

    def authorization() -> str | None:
        # Runs the plugin again when its credential has expired (the loader's refresh hook).
        header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        return str(header) if header else None

    return ConnectionSettings(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        cert_path=configuration.cert_file,
        key_path=configuration.key_file,
        insecure=not configuration.verify_ssl,
        tls_server_name=configuration.tls_server_name or None,
        authorization=authorization,
    )
