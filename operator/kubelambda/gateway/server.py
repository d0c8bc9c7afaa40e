"""One gateway: its parts (activation, upstream pool, sources, edge) and its lifecycle;
`Gateway.serve` runs the public and admin apps on uvicorn in the caller's event loop.

The commands (`kubelambda gateway`, `kubelambda local`) build one through
`kubelambda.commands.serving.create_gateway`, handing in their platform, routing table and
delivery store, and attach the background work (the dispatcher) it starts and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import uvicorn

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock
from kubelambda.delivery.store import DeliveryStore
from kubelambda.gateway.access import AccessKeys, StaticAccessKeys
from kubelambda.gateway.activation import Activator
from kubelambda.gateway.boundedserver import BoundedServer, bounded_protocol
from kubelambda.gateway.connection import Beginner, Responder
from kubelambda.gateway.current import Current
from kubelambda.gateway.edge import AdminApp, PublicApp
from kubelambda.gateway.functionstate import FunctionLoad
from kubelambda.gateway.http import ASGIApp, Handler
from kubelambda.gateway.invocation import Invoker
from kubelambda.gateway.jwks import JwksCache
from kubelambda.gateway.jwt import JwtAuthorizer
from kubelambda.gateway.limits import FunctionLimits
from kubelambda.gateway.metrics import GatewayMetrics
from kubelambda.gateway.platform import Platform
from kubelambda.gateway.routing import RoutingTable
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.http import TriggerHandler
from kubelambda.gateway.sources.invoke_api import InvokeApi
from kubelambda.gateway.sources.management import ManagementApi
from kubelambda.gateway.sources.s3 import S3_EVENTS_PATH, BucketEvents
from kubelambda.gateway.upstream import UpstreamPool

__all__ = ["Background", "Gateway", "ServingAddresses"]

log = logging.getLogger(__name__)


def _never() -> bool:
    """The admin server is never overloaded: /healthz and /metrics answer however late."""
    return False


@dataclass(frozen=True, slots=True)
class ServingAddresses:
    """Where `serve` listens, with the real ports when 0 was asked for."""

    public_host: str
    public_port: int
    admin_host: str
    admin_port: int

    @property
    def public_url(self) -> str:
        return f"http://{_url_host(self.public_host)}:{self.public_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{_url_host(self.admin_host)}:{self.admin_port}"


class Background(Protocol):
    """Work that runs beside the gateway's servers and uses its parts (the dispatcher)."""

    def start(self) -> None: ...

    async def aclose(self) -> None:
        """Stop; called before the gateway closes its upstream connections."""
        ...


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Two servers share one loop, and whoever runs the gateway owns the signals:
        # it calls Gateway.shutdown() (or cancels serve) on SIGTERM.
        yield


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections whose
    # socket says TCP; with Nagle on, a second write (a large answer's body, an answer after
    # 100 Continue) waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Several gateway processes on one port: the kernel spreads connections among them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Gateway:
    """One gateway: its ASGI apps, its routing table, its load counters, its lifecycle."""

    def __init__(
        self,
        *,
        platform: Platform,
        routes: RoutingTable,
        settings: GatewaySettings,
        clock: Clock,
        delivery_store: DeliveryStore,
        access_keys: AccessKeys | None = None,
        jwks: JwksCache | None = None,
    ) -> None:
        self.settings = settings
        # The signing keys of the issuers JWT routes trust, fetched when first needed.
        self.jwks = jwks or JwksCache(clock=clock)
        self._current = Current(routes)
        # Each function's reservedConcurrency and throttling, this replica's share of them.
        self.limits = FunctionLimits(
            spec_of=self._current.spec_of,
            clock=clock,
            replicas=settings.gateway_replicas,
            retry_after_seconds=settings.retry_after_seconds,
        )
        self._activator = Activator(
            platform=platform,
            clock=clock,
            max_queued=settings.max_queued_per_function,
            retry_after_seconds=settings.retry_after_seconds,
            wake_interval_seconds=settings.wake_interval_seconds,
            eject_seconds=settings.eject_seconds,
            busy_eject_seconds=settings.busy_eject_seconds,
            limits=self.limits,
        )
        self.metrics = GatewayMetrics(
            load=self._activator.snapshot, throttles=self.limits.throttles
        )
        self.pool = UpstreamPool(
            idle_seconds=settings.upstream_idle_seconds,
            max_idle_per_instance=settings.upstream_max_idle_per_instance,
        )
        self.invoker = Invoker(
            activator=self._activator,
            pool=self.pool,
            clock=clock,
            metrics=self.metrics,
            grace_seconds=settings.upstream_grace_seconds,
        )
        self.delivery_store = delivery_store
        self._background: list[Background] = []
        triggers = TriggerHandler(
            routes=self._current,
            invoker=self.invoker,
            clock=clock,
            settings=settings,
            jwt=JwtAuthorizer(keys=self.jwks, clock=clock),
        )
        invoke_api = InvokeApi(
            routes=self._current,
            invoker=self.invoker,
            store=delivery_store,
            clock=clock,
            settings=settings,
            access_keys=access_keys or StaticAccessKeys(),
        )
        # The read calls of Lambda's management API, under the same signatures and grants.
        self._management_api = ManagementApi(
            routes=self._current,
            clock=clock,
            settings=settings,
            access_keys=access_keys or StaticAccessKeys(),
        )
        reserved: dict[str, Handler] = {
            S3_EVENTS_PATH: BucketEvents(
                routes=self._current,
                store=delivery_store,
                metrics=self.metrics,
                clock=clock,
                settings=settings,
            ),
        }
        self.public_app = PublicApp(
            triggers=triggers,
            invoke_api=invoke_api,
            management_api=self._management_api,
            invoker=self.invoker,
            reserved=reserved,
            metrics=self.metrics,
            clock=clock,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_seconds=settings.body_timeout_seconds,
            max_buffered_body_bytes=settings.max_buffered_body_bytes,
            retry_after_seconds=settings.retry_after_seconds,
        )
        self.admin_app = AdminApp(metrics=self.metrics)
        self._servers: list[_Server] = []
        self._protocols: list[BoundedServer] = []
        self._drain: asyncio.TimerHandle | None = None
        self._started = False

    # routing

    @property
    def current_routes(self) -> Current:
        """The routing table now: a callable for parts that outlive a swap."""
        return self._current

    @property
    def routes(self) -> RoutingTable:
        return self._current.table

    def set_routes(self, routes: RoutingTable) -> None:
        """Swap the routing table; requests already routed finish with the old one."""
        self._current.set(routes)
        self._management_api.observe(routes)  # dates the Functions whose spec changed

    # load, for local mode's autoscaler

    def load(self) -> Mapping[FunctionKey, FunctionLoad]:
        """In-flight and held requests, capacity and last request time of every function seen."""
        return self._activator.snapshot()

    # lifecycle

    def attach(self, work: Background) -> None:
        """Run `work` beside the servers: started by `start`, stopped by `aclose`."""
        self._background.append(work)
        if self._started:
            work.start()

    async def start(self) -> None:
        """Start the attached background work; `serve` calls it."""
        if not self._started:
            self._started = True
            for work in self._background:
                work.start()

    async def aclose(self) -> None:
        """Answer held requests 503, stop the background work, close upstream connections,
        stop fetching JWT keys."""
        await self._activator.aclose()
        for work in self._background:
            await work.aclose()
        await self.pool.aclose()
        await self.jwks.aclose()
        self._started = False

    def stop(self, *, drain_seconds: float) -> None:
        """SIGTERM's answer: go on accepting and answering for `drain_seconds`, each answer
        closing its connection, then `shutdown()`; asked again, shut down at once.

        A pod being deleted gets SIGTERM while kube-proxy may still send it new connections
        for a moment: a gateway that stopped listening at once would refuse them. Readiness
        stays true meanwhile: Kubernetes already counts a terminating pod out, and keeps
        sending to it only when no other replica serves (then refusing helps nobody).
        """
        if self._drain is not None or drain_seconds <= 0 or not self._servers:
            self.shutdown()
            return
        log.info("draining for %.1f s before shutting down", drain_seconds)
        for protocol in self._protocols:
            protocol.draining = True
        self._drain = asyncio.get_running_loop().call_later(drain_seconds, self.shutdown)

    def shutdown(self) -> None:
        """Ask a running `serve` to return: held requests are answered 503, others finish."""
        if self._drain is not None:
            self._drain.cancel()
        # Held requests first: uvicorn waits for every open request before it returns.
        self._activator.fail_held("the gateway is shutting down")
        for server in self._servers:
            server.should_exit = True

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        admin_host: str | None = None,
        admin_port: int = 9090,
        on_ready: Callable[[ServingAddresses], None] | None = None,
        graceful_seconds: float = 10.0,
        reuse_port: bool = False,
    ) -> None:
        """Serve the public app on host:port and the admin app on admin_host:admin_port
        until `shutdown()` is called or the task is cancelled; port 0 picks a free port,
        and `on_ready` learns the real ones once both accept connections. With `reuse_port`,
        other processes may serve the same public port (SO_REUSEPORT): each is a replica of
        its own, as two gateway pods are.
        """
        admin_host = admin_host or host
        public_sock = _bind(host, port, reuse_port=reuse_port)
        try:
            admin_sock = _bind(admin_host, admin_port)
        except OSError:
            public_sock.close()
            raise
        addresses = ServingAddresses(
            public_host=host,
            public_port=public_sock.getsockname()[1],
            admin_host=admin_host,
            admin_port=admin_sock.getsockname()[1],
        )
        servers = [
            # The public port refuses overflow at the request head, also while connections
            # pile up in its accept queue; the admin port always answers /healthz and /metrics.
            _Server(
                self._config(
                    self.public_app,
                    self.public_app.respond,
                    graceful_seconds,
                    listener=public_sock,
                    begin=self.public_app.begin,
                )
            ),
            _Server(
                self._config(
                    self.admin_app, self.admin_app.respond, graceful_seconds, overloaded=_never
                )
            ),
        ]
        self._servers = servers
        await self.start()
        tasks = [
            asyncio.create_task(servers[0].serve(sockets=[public_sock])),
            asyncio.create_task(servers[1].serve(sockets=[admin_sock])),
        ]
        try:
            async with asyncio.timeout(30):
                while not all(server.started for server in servers):
                    done = [task for task in tasks if task.done()]
                    if done:
                        await done[0]  # raises why the server stopped
                        raise RuntimeError("the gateway's server stopped while starting")
                    await asyncio.sleep(0.01)
            log.info("gateway serving on %s (admin %s)", addresses.public_url, addresses.admin_url)
            if on_ready is not None:
                on_ready(addresses)
            # Either server stopping (shutdown(), a failure) stops both.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.shutdown()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await self.aclose()
            self._servers = []
            self._protocols = []
            self._drain = None
            public_sock.close()
            admin_sock.close()
        # A server that died (rather than stopped when asked) fails serve with its error.
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome

    def _config(
        self,
        app: ASGIApp,
        responder: Responder,
        graceful_seconds: float,
        *,
        listener: socket.socket | None = None,
        overloaded: Callable[[], bool] | None = None,
        begin: Beginner | None = None,
    ) -> uvicorn.Config:
        # uvicorn's server listens, dates answers and shuts down gracefully; the protocol is
        # the gateway's own, which hands requests to `responder` (connection.py).
        settings = self.settings
        protocol = bounded_protocol(
            settings, responder, overloaded=overloaded, listener=listener, begin=begin
        )
        self._protocols.append(protocol)
        return uvicorn.Config(
            app,
            loop="none",
            # Called as a protocol class is (BoundedServer.__call__): one object per server
            # rather than a class made per server, as mypyc compiles connections.
            http=cast(Any, protocol),
            limit_concurrency=settings.max_connections,
            # The accept queue as deep as the connections the gateway may hold (the kernel caps
            # it at net.core.somaxconn), not uvicorn's 2048: a flood is queued, and answered
            # 503 as it is accepted (connection.py), rather than its handshakes dropped.
            backlog=settings.max_connections,
            timeout_keep_alive=int(max(settings.keep_alive_seconds, 1)),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(graceful_seconds),
        )
