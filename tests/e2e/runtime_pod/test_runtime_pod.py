"""Scenario 0: the runtime image runs as a real pod on the real node and answers an invocation over
its pod IP, handler code mounted from a ConfigMap, hardened as the controller will run it."""

from __future__ import annotations

import http.server
import textwrap
import threading

from harness.apiserver import SERVICE_CIDR, SERVICE_IP
from harness.cluster import Cluster
from harness.relay import relay
from harness.workloads import code_configmap, invoke, runtime_deployment

NAMESPACE = "default"
CODE = textwrap.dedent(
    """
    import os


    def handler(event, context):
        with open("/tmp/probe", "w") as scratch:  # /tmp is writable, the rest is not
            scratch.write("ok")
        return {
            "echo": event,
            "function": context.function_name,
            "requestId": context.aws_request_id,
            "uid": os.getuid(),
            "taskRoot": os.environ["LAMBDA_TASK_ROOT"],
        }


    def boom(event, context):
        raise ValueError("no good")
    """
)


def test_runtime_pod_answers_over_its_pod_ip(e2e_cluster: Cluster) -> None:
    e2e_cluster.apply(
        [
            code_configmap("scenario0-code", NAMESPACE, {"app.py": CODE}),
            runtime_deployment(
                name="scenario0",
                namespace=NAMESPACE,
                image=e2e_cluster.images.runtime.name,
                handler="app.handler",
                code_configmap="scenario0-code",
            ),
        ]
    )
    pods = e2e_cluster.wait_ready_pods(NAMESPACE, "app.kubernetes.io/name=scenario0", timeout=120)
    ip = pods[0]["status"]["podIP"]

    answer = invoke(ip, {"hello": "pod"})

    assert answer.status == 200
    assert answer.body["echo"] == {"hello": "pod"}
    assert answer.body["function"] == "scenario0"
    assert answer.body["uid"] == 10001
    assert answer.body["taskRoot"] == "/var/task"
    assert answer.body["requestId"]


def test_handler_error_has_lambdas_shape_from_a_pod(e2e_cluster: Cluster) -> None:
    e2e_cluster.apply(
        [
            code_configmap("scenario0-boom-code", NAMESPACE, {"app.py": CODE}),
            runtime_deployment(
                name="scenario0-boom",
                namespace=NAMESPACE,
                image=e2e_cluster.images.runtime.name,
                handler="app.boom",
                code_configmap="scenario0-boom-code",
            ),
        ]
    )
    pods = e2e_cluster.wait_ready_pods(
        NAMESPACE, "app.kubernetes.io/name=scenario0-boom", timeout=120
    )
    ip = pods[0]["status"]["podIP"]

    answer = invoke(ip, {})

    assert answer.status == 200
    assert answer.headers.get("x-amz-function-error") == "Unhandled"
    assert answer.body["errorType"] == "ValueError"
    assert answer.body["errorMessage"] == "no good"


ROUTES_CODE = textwrap.dedent(
    """
    import ipaddress
    import socket
    import urllib.request


    def _address(hex_le):
        return str(ipaddress.IPv4Address(socket.ntohl(int(hex_le, 16))))


    def handler(event, context):
        routes = []
        with open("/proc/net/route") as table:
            next(table)
            for line in table:
                fields = line.split()
                prefix = bin(socket.ntohl(int(fields[7], 16))).count("1")
                routes.append(f"{_address(fields[1])}/{prefix}")
        with urllib.request.urlopen(event["url"], timeout=5) as answer:
            fetched = answer.read().decode()
        try:
            socket.gethostbyname("example.org")
            outside = "resolved"
        except OSError:
            outside = "unknown"
        return {
            "routes": sorted(routes),
            "fetched": fetched,
            "kubernetes": socket.gethostbyname("kubernetes.default.svc"),
            "outside": outside,
        }
    """
)


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the host's loopback"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_pod_network_stays_on_this_machine(e2e_cluster: Cluster) -> None:
    """Pods route only to their bridge, the node's address and the Service range (no default
    route), resolve Services (and nothing else) through the cluster DNS, and reach a loopback
    server of the harness through a relay on the node's address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with relay(e2e_cluster.node_ip, ("127.0.0.1", server.server_address[1])) as to_host:
            e2e_cluster.apply(
                [
                    code_configmap("scenario0-net-code", NAMESPACE, {"app.py": ROUTES_CODE}),
                    runtime_deployment(
                        name="scenario0-net",
                        namespace=NAMESPACE,
                        image=e2e_cluster.images.runtime.name,
                        handler="app.handler",
                        code_configmap="scenario0-net-code",
                    ),
                ]
            )
            pods = e2e_cluster.wait_ready_pods(
                NAMESPACE, "app.kubernetes.io/name=scenario0-net", timeout=120
            )
            answer = invoke(pods[0]["status"]["podIP"], {"url": to_host.url})
    finally:
        server.shutdown()

    assert answer.body["fetched"] == "hello from the host's loopback"
    assert answer.body["kubernetes"] == SERVICE_IP
    assert answer.body["outside"] == "unknown"
    assert answer.body["routes"] == sorted(
        [f"{e2e_cluster.node_ip}/32", SERVICE_CIDR, e2e_cluster.pod_cidr]
    )
