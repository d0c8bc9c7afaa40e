"""Random ids for every invocation the gateway makes: request ids (UUIDs, version 4 format), and
the trace and span ids tracing.py starts.

Their digits come from the kernel's random bytes (`os.urandom`, as `uuid.uuid4` draws them) in
bulk: some four thousand hex digits per draw, where drawing and formatting each id's alone cost
several times more per request (issue 17). A forked child discards what its parent drew, so it
never repeats its parent's ids.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["new_request_id", "random_hex"]

_DRAWN: Final = 2048  # random bytes per draw: 4,096 hex digits


class _Digits:
    """Random hex digits, drawn `_DRAWN` bytes at a time and handed out in slices."""

    def __init__(self) -> None:
        self._digits = ""
        self._at = 0

    def discard(self) -> None:
        self._digits = ""
        self._at = 0

    def take(self, count: int) -> str:
        at = self._at
        end = at + count
        if end > len(self._digits):
            self._digits = os.urandom(_DRAWN).hex()
            at, end = 0, count
        self._at = end
        return self._digits[at:end]


_DIGITS: Final = _Digits()
os.register_at_fork(after_in_child=_DIGITS.discard)
# A UUID's variant digit (10xx in binary) from a random hex digit's two low bits.
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def random_hex(count: int) -> str:
    """`count` (at most 4,096) random lower-case hex digits."""
    return _DIGITS.take(count)


def new_request_id() -> str:
    """A new id such as `3f0c2a9e-8d1b-4c6f-9a2e-5b7d1c0e4f8a`."""
    h = _DIGITS.take(31)  # 32 digits but the version's
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{_VARIANT[h[15]]}{h[16:19]}-{h[19:]}"
