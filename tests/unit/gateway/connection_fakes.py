"""Stand-ins for what uvicorn hands the gateway's connection protocol (connection.py): a
transport that records what is written, the server config and the server state, for tests that
feed the protocol bytes directly."""

from __future__ import annotations

import asyncio
from typing import Any


class Transport:
    """Records what the protocol writes; nothing is sent anywhere."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.writes.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Config:
    limit_concurrency = 10
    timeout_keep_alive = 5


class ServerState:
    def __init__(self, default_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.total_requests = 0
        self.default_headers = default_headers or []
