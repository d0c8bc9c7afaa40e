"""Random (version 4) UUIDs for request IDs and log stream names, without the ``uuid`` module.

``uuid`` imports ``platform`` and builds its enums at import time: a cost every cold start of
the server and of each worker would pay for two strings. Same format as ``str(uuid.uuid4())``.
"""

from __future__ import annotations

import os


def uuid4() -> str:
    """A random UUID in its canonical form, e.g. ``'1b4e28ba-2fa1-41d2-883f-0016d3cca427'``."""
    value = int.from_bytes(os.urandom(16), "big")
    # RFC 4122 section 4.4: version 4 in bits 76-79, the variant 0b10 in bits 62-63.
    value = (value & ~(0xF000 << 64)) | (4 << 76)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def uuid4_hex() -> str:
    """A random UUID as 32 hex digits, as ``uuid.uuid4().hex``."""
    return uuid4().replace("-", "")
