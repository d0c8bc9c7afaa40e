"""Cluster DNS for the e2e node: a small UDP server on the node's address that answers A queries for
Services (`NAME.NAMESPACE.svc.cluster.local`: the cluster IP, or the ready pod IPs of a headless
Service) from the API server, and NXDOMAIN for every other name, since nothing outside exists.
The kubelet points pods at it (clusterDNS), so in-cluster URLs such as the chart's work.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from harness.kubeapi import KubeApi

DOMAIN = "cluster.local"
TTL = 5  # seconds: short, since Services come and go within a test
A, AAAA = 1, 28
NOERROR, FORMERR, SERVFAIL, NXDOMAIN = 0, 1, 2, 3


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    """A question's name (no compression in questions); returns it and the offset after it."""
    labels: list[str] = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels), offset
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length


def service_addresses(api: KubeApi, name: str) -> list[str] | None:
    """A Service's addresses for `name` (lowercase, no trailing dot), or None if no such name."""
    parts = name.split(".")
    if len(parts) != 5 or ".".join(parts[2:]) != f"svc.{DOMAIN}":
        return None
    service, namespace = parts[0], parts[1]
    try:
        found = api.request("GET", f"/api/v1/namespaces/{namespace}/services/{service}")
    except RuntimeError:  # 404: no such Service
        return None
    cluster_ip = found["spec"].get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        return [cluster_ip]
    # Headless: the ready endpoints' addresses.
    slices = api.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        f"?labelSelector=kubernetes.io/service-name={service}",
    )
    return [
        address
        for item in slices["items"]
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready", True)
        for address in endpoint.get("addresses", [])
    ]


def answer(packet: bytes, lookup: Callable[[str], list[str] | None]) -> bytes:
    """The response to one query packet."""
    if len(packet) < 12:
        return b""
    ident, flags, questions = struct.unpack("!HHH", packet[:6])
    recursion = flags & 0x0100
    if questions != 1 or flags & 0x8000:
        return struct.pack("!HHHHHH", ident, 0x8000 | recursion | FORMERR, 0, 0, 0, 0)
    try:
        name, end = _read_name(packet, 12)
        qtype, qclass = struct.unpack("!HH", packet[end : end + 4])
    except (ValueError, IndexError, struct.error):
        return struct.pack("!HHHHHH", ident, 0x8000 | recursion | FORMERR, 0, 0, 0, 0)
    question = packet[12 : end + 4]
    addresses = lookup(name.lower().rstrip("."))
    records = b""
    count = 0
    if addresses is not None and qtype == A:
        for address in addresses:
            # Name as a pointer to the question (offset 12), type A, class IN.
            records += struct.pack("!HHHIH", 0xC00C, A, qclass, TTL, 4)
            records += ipaddress.IPv4Address(address).packed
            count += 1
    rcode = NXDOMAIN if addresses is None else NOERROR
    # QR, authoritative, recursion available (nothing beyond this cluster to recurse to).
    header = struct.pack("!HHHHHH", ident, 0x8400 | recursion | 0x0080 | rcode, 1, count, 0, 0)
    return header + question + records


@contextmanager
def cluster_dns(api: KubeApi, host: str, port: int = 53) -> Iterator[tuple[str, int]]:
    """Serve DNS on host:port (UDP) in a thread until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.settimeout(0.2)  # so the thread notices `stop`
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                packet, client = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = answer(packet, lambda name: service_addresses(api, name))
            except Exception:  # a failed lookup must not end the server: SERVFAIL, try again
                reply = packet[:2] + struct.pack("!H", 0x8080 | SERVFAIL) + bytes(8)
            if reply:
                sock.sendto(reply, client)

    thread = threading.Thread(target=serve, name="cluster-dns", daemon=True)
    thread.start()
    try:
        yield host, port
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
