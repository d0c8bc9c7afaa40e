"""A TCP relay from the e2e node's address to a server on loopback, so pods can reach the
harness's MinIO and Prometheus (which listen on 127.0.0.1 only). The target may be set later:
until then connections are closed at once, as a server that is not up yet would refuse them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager


class Relay:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.target: tuple[str, int] | None = None
        self.connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            if self.target is None:
                writer.close()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            writer.close()
        finally:
            if task is not None:
                self.connections.discard(task)


@contextmanager
def relay(host: str, target: tuple[str, int] | None = None) -> Iterator[Relay]:
    """Listen on `host` (a free port) in a background thread until the block ends."""
    made = Relay(host, 0)  # the port the listener gets: a port probed elsewhere may be taken here
    made.target = target
    loop = asyncio.new_event_loop()
    started: Future[asyncio.Event] = Future()

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            server = await asyncio.start_server(made._serve_one, host, 0)
        except OSError as exc:
            started.set_exception(exc)
            return
        made.port = server.sockets[0].getsockname()[1]
        started.set_result(stop)
        async with server:
            await stop.wait()
            # Connections still open (keep-alive clients) end with the relay, inside the loop.
            for connection in list(made.connections):
                connection.cancel()
            await asyncio.gather(*made.connections, return_exceptions=True)

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    stop = started.result(timeout=10)
    try:
        yield made
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
