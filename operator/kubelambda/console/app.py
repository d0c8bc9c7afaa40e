"""The console's web app (FastAPI): GET only, HTML pages drawn from a `ConsoleSource`, which
is local mode's process (`local.py`) or a cluster's API server and Prometheus (`cluster.py`).

`kubelambda local` and `kubelambda console` build it with `create_app` and serve it with
`serve_console`. A source's failure becomes a 503 page naming it, never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from html import escape
from typing import Protocol

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from kubelambda.api.identity import FunctionKey
from kubelambda.console.figures import Logs, Overview
from kubelambda.console.page import function_page, overview_page

__all__ = ["ConsoleSource", "SourceError", "bind", "bind_console", "create_app", "serve_console"]

log = logging.getLogger(__name__)
LATEST_INVOCATIONS = 5
# No script, no frames, nothing from elsewhere: the pages need their inline style and SVG only.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
    " frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SourceError(Exception):
    """A source could not read what the page shows; the message names what and why."""


class ConsoleSource(Protocol):
    async def overview(self) -> Overview: ...

    async def logs(self, key: FunctionKey, *, last: int) -> Logs: ...


def create_app(source: ConsoleSource) -> FastAPI:
    app = FastAPI(title="kubelambda console", docs_url=None, redoc_url=None, openapi_url=None)

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status, headers=_HEADERS)

    def unavailable(exc: Exception) -> HTMLResponse:
        log.warning("console: %s", exc)
        return html(
            "<!DOCTYPE html><html><head><title>kubelambda console</title></head><body>"
            f"<h1>kubelambda console</h1><p>Cannot show this page: {escape(str(exc))}</p>"
            "</body></html>",
            503,
        )

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        try:
            return html(overview_page(await source.overview()))
        except SourceError as exc:
            return unavailable(exc)

    @app.get("/functions/{namespace}/{name}", response_class=HTMLResponse)
    async def function(namespace: str, name: str) -> Response:
        key = FunctionKey(namespace, name)
        try:
            overview = await source.overview()
            logs = await source.logs(key, last=LATEST_INVOCATIONS)
        except SourceError as exc:
            return unavailable(exc)
        page = function_page(overview, key, logs)
        if page is None:
            return html(f"<p>No Function {escape(f'{namespace}/{name}')}.</p>", 404)
        return html(page)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The command that runs the console owns SIGINT and SIGTERM: it cancels the task.
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: any free port); OSError when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_console(host: str, port: int | None, *, default: int) -> socket.socket:
    """The console's socket: on `port` (OSError when taken), else on `default` or, when another
    process has that one, on a free port."""
    if port is not None:
        return bind(host, port)
    try:
        return bind(host, default)
    except OSError:
        return bind(host, 0)


async def serve_console(
    app: FastAPI,
    sock: socket.socket,
    *,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve `app` on the bound `sock` until cancelled."""
    config = uvicorn.Config(
        app,
        loop="none",
        lifespan="off",
        ws="none",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        limit_concurrency=64,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("the console's server stopped while starting")
                await asyncio.sleep(0.01)
        if on_ready is not None:
            on_ready()
        await task
    finally:
        server.should_exit = True
        if not task.done():
            await asyncio.gather(task, return_exceptions=True)
