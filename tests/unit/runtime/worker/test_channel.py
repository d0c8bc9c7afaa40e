"""The worker's side of its socket: frames, and the descriptors passed along with them."""

from __future__ import annotations

import os
import socket

import pytest

from kubelambda_runtime.wire import framing
from kubelambda_runtime.worker.channel import Channel


def test_frames_arrive_whole_with_their_descriptor_in_order():
    server, worker = socket.socketpair()
    channel = Channel(worker)
    read_end, write_end = os.pipe()
    big = b"e" * 200_000  # larger than one read
    server.sendall(framing.encode({"type": "invoke", "id": "a"}, b"{}"))
    socket.send_fds(server, [framing.encode({"type": "take", "fd": True}, b"[]")], [write_end])
    sender = os.fork()
    if sender == 0:  # a writer on the other side, so the big frame does not block the test
        server.sendall(framing.encode({"type": "invoke"}, big))
        os._exit(0)
    first = channel.next()
    second = channel.next()
    third = channel.next()
    os.waitpid(sender, 0)
    assert first == ({"type": "invoke", "id": "a"}, b"{}", None)
    header, body, fd = second  # type: ignore[misc]
    assert header["type"] == "take" and body == b"[]" and fd is not None
    os.write(fd, b"through the passed descriptor")
    assert os.read(read_end, 100) == b"through the passed descriptor"
    assert third == ({"type": "invoke"}, big, None)
    for end in (read_end, write_end, fd):
        os.close(end)


def test_a_readable_connection_comes_before_waiting_for_a_frame_and_frames_come_first():
    server, worker = socket.socketpair()
    client, held = socket.socketpair()
    channel = Channel(worker)
    client.sendall(b"request bytes")
    assert channel.next(held) is None  # the held connection has something, the server nothing
    server.sendall(framing.encode({"type": "release"}))
    assert channel.next(held) == ({"type": "release"}, b"", None)  # both ready: the frame first
    channel.forget(held)
    server.close()
    with pytest.raises(EOFError):
        channel.next()


def test_a_passed_descriptor_is_not_inherited_by_programs_a_handler_runs():
    server, worker = socket.socketpair()
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as the server's socket may be
    socket.send_fds(server, [framing.encode({"type": "take", "fd": True})], [write_end])
    _, _, fd = Channel(worker).next()  # type: ignore[misc]
    assert fd is not None and not os.get_inheritable(fd)
    for end in (read_end, write_end, fd):
        os.close(end)
