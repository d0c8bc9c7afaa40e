"""Request ids: canonical version-4 UUIDs, all different; random hex for trace and span ids; a
forked child draws its own."""

from __future__ import annotations

import os
import uuid
import warnings

from kubelambda.gateway.ids import new_request_id, random_hex


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


def test_random_hex_gives_fresh_digits_across_draws() -> None:
    # Slices of 24 and 16 digits, as trace and span ids take them, past several bulk draws.
    taken = [random_hex(24 if n % 2 else 16) for n in range(2_000)]
    assert all(len(t) == (24 if n % 2 else 16) for n, t in enumerate(taken))
    assert all(set(t) <= set("0123456789abcdef") for t in taken)
    assert len(set(taken)) == len(taken)
    assert set("".join(taken)) == set("0123456789abcdef")


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_request_id()  # the pool holds digits the child would hand out too, unless it seeds
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads about
        pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert uuid.UUID(child).version == 4
    assert child != new_request_id()
