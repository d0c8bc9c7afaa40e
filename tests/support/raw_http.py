"""HTTP answers read off a plain socket, for tests and benchmarks that speak to the gateway
byte by byte (floods, refusals before a request is read)."""

from __future__ import annotations

import re
import socket
import time


def read_answer(client: socket.socket, deadline: float) -> bytes:
    """What the server answered on `client` by `deadline` (time.monotonic): b"" if nothing.
    Reads one answer, up to its content-length or the close; closes `client`."""
    data = b""
    try:
        while time.monotonic() < deadline:
            client.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = client.recv(65536)
            data += chunk
            head, done, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            if not chunk or (done and length and len(body) >= int(length.group(1))):
                break
    except ConnectionResetError:
        pass  # refused unread: the reset comes after the answer, which was read first
    except TimeoutError:
        pass
    finally:
        client.close()
    return data
