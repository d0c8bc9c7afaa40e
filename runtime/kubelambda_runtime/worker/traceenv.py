"""`_X_AMZN_TRACE_ID`, the invocation's X-Ray trace header, set for each invocation without a leak.

Lambda's Python runtime puts each invocation's trace header in the environment variable
`_X_AMZN_TRACE_ID` (awslambdaric: ``os.environ[name] = value``), where the X-Ray and
OpenTelemetry SDKs read it, and a subprocess the handler starts inherits it. But
``os.environ[name] = value`` calls glibc's setenv(3), which copies "name=value" and keeps every
copy it ever made for the life of the process (a pointer to an old one may still be held), so
a worker given a new trace on every invocation grew by about 140 bytes per invocation: a
128 MB function ran out of memory after some 700,000 warm invocations.

Here the variable's C string is a buffer of our own, given to putenv(3) once (POSIX: the very
string becomes part of the environment, so changing it changes the environment) and rewritten
in place; os.environ's mapping, which Python code reads, is updated without setenv. A value
longer than the buffer gets a new buffer twice the size; the old one is dropped once the
environment no longer points at it. Without ctypes or a C library that has putenv and getenv,
it falls back to ``os.environ`` (and its leak).
"""

from __future__ import annotations

import os
from typing import Any, Final

NAME: Final = "_X_AMZN_TRACE_ID"
_ENTRY: Final = NAME.encode() + b"="
_FIRST_SIZE: Final = 256  # a trace header with a Lineage still fits


class TraceVariable:
    """The worker's `_X_AMZN_TRACE_ID`: `set` before each invocation, None when it has none."""

    def __init__(self) -> None:
        self._libc: Any = None  # ctypes' C library, once the first value is set
        self._ctypes: Any = None
        self._buffer: Any = None  # "NAME=value\\0", what the environment points at
        self._fallback = False

    def set(self, value: str | None) -> None:
        if not value:
            self._clear()
            return
        encoded = os.fsencode(value)
        if b"\0" in encoded or self._fallback or not self._load():
            # The embedded NUL: os.environ names the problem (ValueError); the handler has
            # no trace rather than a failed invocation.
            self._set_slowly(value)
            return
        entry = _ENTRY + encoded + b"\0"
        buffer = self._buffer
        if buffer is None or len(entry) > len(buffer):
            size = _FIRST_SIZE
            while size < len(entry):
                size *= 2
            buffer = self._ctypes.create_string_buffer(size)
        self._ctypes.memmove(buffer, entry, len(entry))
        # Point the environment at the buffer unless it does already (a new buffer; or the
        # handler set or removed the variable itself).
        pointed = self._libc.getenv(_ENTRY[:-1]) == self._ctypes.addressof(buffer) + len(_ENTRY)
        if not pointed and self._libc.putenv(buffer) != 0:
            self._set_slowly(value)
            return
        self._buffer = buffer
        os.environ._data[_ENTRY[:-1]] = encoded  # type: ignore[attr-defined]

    def _clear(self) -> None:
        # unsetenv(3) frees nothing and copies nothing: no leak on this side.
        os.environ.pop(NAME, None)

    def _set_slowly(self, value: str) -> None:
        try:
            os.environ[NAME] = value
        except ValueError:
            self._clear()

    def _load(self) -> bool:
        if self._libc is not None:
            return True
        try:
            # Imported here: a worker pays for ctypes on its first traced invocation, not on
            # its start (local mode's zygote has it loaded already).
            import ctypes

            libc = ctypes.CDLL(None)
            libc.getenv.restype = ctypes.c_void_p
            libc.getenv.argtypes = [ctypes.c_char_p]
        except (ImportError, OSError, AttributeError):
            self._fallback = True  # not tried again on every invocation
            return False
        self._ctypes, self._libc = ctypes, libc
        return True
