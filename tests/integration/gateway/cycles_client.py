"""The clients of test_cycles.py, in a process of their own: REQUESTS requests of one case sent
at once, one thread and connection each; prints each one's answer, one per line (hex).

Its own process, so that what its threads leave behind (threads, events, futures, some of them
in reference cycles) is not counted among the gateway's: a CI run once found 142 such objects
and none of the gateway's.

    python cycles_client.py HOST PORT PATH BODY_HEX LEAVES REQUESTS
"""

from __future__ import annotations

import re
import socket
import sys
import threading


def send(host: str, port: int, path: bytes, body: bytes, *, leaves: bool) -> bytes:
    """The status code the gateway answered with, then a space and the start of its body (which
    names the refusal: two CI runs saw 503s where 504s were due); b"" when the client left
    first; what came before a reset, so that a failure lists every answer (two CI runs of 30 saw
    a reset once, not reproduced alone: which answer it cut short says which refusal it was)."""
    with socket.create_connection((host, port), timeout=10) as client:
        client.sendall(
            b"POST %s HTTP/1.1\r\nhost: gateway\r\ncontent-length: %d\r\nconnection: close\r\n"
            b"\r\n%s" % (path, len(body), body)
        )
        if leaves:
            return b""
        answer = b""
        try:
            while chunk := client.recv(65536):
                answer += chunk
        except ConnectionResetError:
            return b"reset after %r" % answer[:60]
    status = re.match(rb"HTTP/1\.1 (\d+) ", answer)
    if status is None:
        return answer[:40]
    _, _, content = answer.partition(b"\r\n\r\n")
    return b"%s %s" % (status.group(1), content[:160])


def main() -> None:
    host, port, path, body, leaves, count = sys.argv[1:]
    answers: list[bytes] = [b""] * int(count)

    def one(index: int) -> None:
        answers[index] = send(
            host, int(port), path.encode(), bytes.fromhex(body), leaves=leaves == "1"
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(int(count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answer in answers:
        print(answer.hex())


if __name__ == "__main__":
    main()
