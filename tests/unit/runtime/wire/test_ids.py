"""wire/ids.py makes the same random UUIDs as ``uuid.uuid4()``, without importing ``uuid``."""

from __future__ import annotations

import uuid

from kubelambda_runtime.wire import ids


def test_uuid4_is_a_canonical_random_rfc_4122_uuid() -> None:
    for _ in range(2000):  # the version and variant bits are forced whatever the random bits
        text = ids.uuid4()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_uuid4_hex_is_the_same_without_dashes() -> None:
    text = ids.uuid4_hex()
    assert len(text) == 32
    parsed = uuid.UUID(hex=text)
    assert parsed.hex == text
    assert parsed.version == 4


def test_uuids_do_not_repeat() -> None:
    assert len({ids.uuid4() for _ in range(1000)}) == 1000
