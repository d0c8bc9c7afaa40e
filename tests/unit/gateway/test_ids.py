"""Request ids: canonical version-4 UUIDs, all different."""

from __future__ import annotations

import uuid

from kubelambda.gateway.ids import new_request_id


def test_request_ids_are_distinct_version_4_uuids_in_canonical_form() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == value  # lower-case, dashes in their places
    # every bit outside the version and variant varies
    ored = anded = uuid.UUID(ids[0]).int
    for value in ids[1:]:
        ored |= uuid.UUID(value).int
        anded &= uuid.UUID(value).int
    fixed = (0xF << 76) | (0xC << 60)
    assert ored | fixed == (1 << 128) - 1
    assert anded & ~fixed == 0
