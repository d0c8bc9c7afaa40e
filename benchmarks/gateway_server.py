"""The gateway as the benchmarks run it: one process, uvloop, a fixed instance and a route,
its start-up heap frozen and its collector tuned once it serves, as `kubelambda gateway`'s.

python benchmarks/gateway_server.py --port P --admin-port A --instance-port I [--reuse-port]

With --reuse-port several of these serve one public port (SO_REUSEPORT), each its own
replica with its own admin port, as gateway pods behind one Service are.
"""

from __future__ import annotations

import argparse

import uvloop

from kubelambda.api.identity import FunctionKey
from kubelambda.commands.heap import freeze_startup_heap
from kubelambda.commands.serving import create_gateway
from kubelambda.gateway.platform import FakePlatform, Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable
from kubelambda.gateway.server import ServingAddresses


def serving(_: ServingAddresses) -> None:
    freeze_startup_heap()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--instance-port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=1024)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    key = FunctionKey("default", "hello")
    platform = FakePlatform()
    instance = Instance("bench", "127.0.0.1", args.instance_port, concurrency=args.concurrency)
    platform.set_instances(key, [instance])
    # Anonymous, as spec.invoke.anonymous: nginx checks no signature either.
    function = FunctionEntry(key, timeout_seconds=30, anonymous_invoke=True)
    routes = RoutingTable(functions=[function], routes=[HttpRoute(key, "/hello")])
    gateway = create_gateway(platform=platform, routes=routes)
    uvloop.run(
        gateway.serve(
            port=args.port,
            admin_port=args.admin_port,
            reuse_port=args.reuse_port,
            on_ready=serving,
        )
    )


if __name__ == "__main__":
    main()
