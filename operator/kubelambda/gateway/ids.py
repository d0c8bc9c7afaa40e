"""Request ids: random UUIDs (version 4 format) for every invocation the gateway makes.

Triggers and the Invoke API call `new_request_id` once per request. It draws from the
`random` module instead of the kernel like `uuid.uuid4`: ids must be unique, not secret,
and this halves their cost on the hot path.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["new_request_id"]

_bits: Final = random.SystemRandom().getrandbits(64)
_random: Final = random.Random(_bits)
_getrandbits: Final = _random.getrandbits
# The version (4) and variant (10xx) bits of a UUID, set on 128 random bits by arithmetic.
_VERSION_VARIANT: Final = (0x4 << 76) | (0x8 << 60)
_RANDOM_BITS: Final = ((1 << 128) - 1) & ~((0xF << 76) | (0xC << 60))


def new_request_id() -> str:
    """A new id such as `3f0c2a9e-8d1b-4c6f-9a2e-5b7d1c0e4f8a`."""
    h = ((_getrandbits(128) & _RANDOM_BITS) | _VERSION_VARIANT).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
