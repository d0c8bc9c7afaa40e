"""The durable delivery store: one file per job, rewritten on retry, removed when done, reloaded
by the next store on the same directory; bounded like the memory store; used by a gateway
with a state directory for Event invocations too."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import FakeClock, SystemClock
from kubelambda.delivery.codec import decode_job, encode_job
from kubelambda.delivery.files import FileDeliveryStore
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from unit.gateway.serving import HELLO, MakeStandIn, StartGateway, wait_for

pytestmark = pytest.mark.anyio

FN = FunctionKey("default", "fn")
LETTERS = FunctionKey("team-a", "letters")
INVOKE = "/2015-03-31/functions/hello/invocations"
EVENT = {"headers": {"x-amz-invocation-type": "Event"}}


def job(name: str, **fields: object) -> DeliveryJob:
    values: dict[str, object] = {
        "id": name,
        "payload": b'{"Records": []}',
        "policy": DeliveryPolicy(),
        "invoked_arn": "arn:aws:lambda:us-east-1:000000000000:function:fn",
        "enqueued_at": 1_700_000_000.5,
        "function": FN,
    }
    values.update(fields)
    return DeliveryJob(**values)  # type: ignore[arg-type]


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    "original",
    [
        job("plain"),
        job(
            "everything",
            payload=bytes(range(256)),
            policy=DeliveryPolicy(
                retries=1, backoff_seconds=2.5, dead_letter_function=LETTERS, dead_letter_url=None
            ),
            client_context=b"eyJhIjogMX0=",
            attempts=2,
            throttles=3,
            last_error={"statusCode": 200, "functionError": "Unhandled", "body": {"e": "x"}},
        ),
        job(
            "letter",
            function=None,
            url="https://example.invalid/dlq?x=1",
            dead_letter=True,
            policy=DeliveryPolicy(retries=0, dead_letter_url="https://example.invalid/dlq"),
        ),
    ],
    ids=lambda j: j.id,
)
def test_a_job_survives_its_file(original: DeliveryJob) -> None:
    copy, due = decode_job(encode_job(original, due_wall=1_700_000_123.25))
    assert due == 1_700_000_123.25
    for name in DeliveryJob.__slots__:
        if name != "due":
            assert getattr(copy, name) == getattr(original, name), name


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "Expecting value"),
        (b'{"version": 99}', "version"),
        (encode_job(job("x", function=None), due_wall=0.0), "no function, URL or subject"),
    ],
)
def test_a_file_that_is_not_a_job_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_job(data)


async def test_admitted_jobs_are_files_until_done(tmp_path: Path) -> None:
    store = FileDeliveryStore(directory=tmp_path, capacity=10, clock=SystemClock())
    assert await store.admit([job("a"), job("b")])
    assert len(files(tmp_path)) == 2 and len(store) == 2
    first = await asyncio.wait_for(store.take(), 1)
    second = await asyncio.wait_for(store.take(), 1)
    assert [first.id, second.id] == ["a", "b"]
    await store.done(first)
    assert len(files(tmp_path)) == 1
    await store.done(second)
    assert files(tmp_path) == [] and len(store) == 0


async def test_a_new_store_resumes_what_the_old_one_held(tmp_path: Path) -> None:
    clock = FakeClock()
    old = FileDeliveryStore(directory=tmp_path, capacity=10, clock=clock)
    assert await old.admit([job("first"), job("second")])
    assert old.offer(job("third"))
    taken = await asyncio.wait_for(old.take(), 1)
    taken.attempts = 1
    taken.last_error = {"statusCode": 200}
    await old.retry(taken, due=clock.monotonic() + 60)
    # the gateway stops; a new process has a new monotonic clock, wall time went on
    clock = FakeClock(monotonic=5.0, wall=clock.wall() + 20)
    new = FileDeliveryStore(directory=tmp_path, capacity=10, clock=clock)
    assert new.reloaded == 3 and len(new) == 3
    now = [await asyncio.wait_for(new.take(), 1) for _ in range(2)]
    assert [j.id for j in now] == ["second", "third"]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(new.take(), 0.05)  # "first" is due 40 s from now
    clock.advance(40)
    later = await asyncio.wait_for(new.take(), 1)
    assert (later.id, later.attempts, later.last_error) == ("first", 1, {"statusCode": 200})
    for item in (*now, later):
        await new.done(item)
    assert files(tmp_path) == []


async def test_admit_is_all_or_nothing_against_the_bound(tmp_path: Path) -> None:
    store = FileDeliveryStore(directory=tmp_path, capacity=3, clock=SystemClock())
    assert await store.admit([job("a"), job("b")])
    assert not await store.admit([job("c"), job("d")])
    assert store.offer(job("c"))  # the one place still free
    assert not store.offer(job("d"))
    taken = await asyncio.wait_for(store.take(), 1)
    assert not await store.admit([job("e")])  # a taken job still holds its place
    await store.done(taken)
    assert await store.admit([job("e")])
    assert len(files(tmp_path)) == 3


async def test_places_are_held_while_an_admit_writes(tmp_path: Path) -> None:
    store = FileDeliveryStore(directory=tmp_path, capacity=2, clock=SystemClock())
    writing = asyncio.ensure_future(store.admit([job("a"), job("b")]))
    await asyncio.sleep(0)  # the admit has reserved its places and awaits the disk
    assert len(store) == 2
    assert not store.offer(job("c"))
    assert await asyncio.wait_for(writing, 5)


async def test_a_failed_write_leaves_no_file_and_no_reservation(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    store = FileDeliveryStore(directory=directory, capacity=5, clock=SystemClock())
    directory.rmdir()  # every write now fails
    with pytest.raises(FileNotFoundError):
        await store.admit([job("a"), job("b")])
    assert len(store) == 0
    assert not store.offer(job("c"))  # refused: the Invoke API answers 429
    directory.mkdir()
    assert await store.admit([job("a")])


async def test_leftovers_are_cleaned_and_unreadable_files_kept_aside(tmp_path: Path) -> None:
    store = FileDeliveryStore(directory=tmp_path, capacity=5, clock=SystemClock())
    assert await store.admit([job("good")])
    (tmp_path / "0-000000-half.job.tmp").write_bytes(b'{"version"')
    (tmp_path / "0-000001-bad.job").write_bytes(b"garbage")
    (tmp_path / "README").write_text("not a job")
    again = FileDeliveryStore(directory=tmp_path, capacity=5, clock=SystemClock())
    assert again.reloaded == 1
    assert (await asyncio.wait_for(again.take(), 1)).id == "good"
    names = files(tmp_path)
    assert "0-000001-bad.job.corrupt" in names and "README" in names
    assert not any(name.endswith(".tmp") for name in names)


async def test_a_retry_rewrites_the_file(tmp_path: Path) -> None:
    clock = FakeClock()
    store = FileDeliveryStore(directory=tmp_path, capacity=5, clock=clock)
    assert await store.admit([job("a")])
    taken = await asyncio.wait_for(store.take(), 1)
    taken.attempts = 2
    await store.retry(taken, due=clock.monotonic() + 30)
    (name,) = files(tmp_path)
    stored, due = decode_job((tmp_path / name).read_bytes())
    assert stored.attempts == 2
    assert due == pytest.approx(clock.wall() + 30)


async def test_admit_syncs_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = FileDeliveryStore(directory=tmp_path, capacity=5, clock=SystemClock())
    store.offer(job("fast"))
    assert synced == []  # offer runs on the event loop and does not wait for the disk
    assert await store.admit([job("a"), job("b")])
    assert len(synced) == 3  # two files, then the directory


async def test_with_a_state_dir_event_invocations_are_files_too(
    serve: StartGateway, standin: MakeStandIn, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        delivery_state_dir=tmp_path, hold_timeout_seconds=0.05, invoke_auth=False
    )
    quick = DeliveryPolicy(backoff_seconds=0.01)
    first = await serve(functions=[FunctionEntry(HELLO, delivery=quick)], settings=settings)
    answer = await first.client.post(INVOKE, json={"order": 1}, **EVENT)
    assert answer.status_code == 202
    assert len(files(tmp_path)) == 1  # written before the 202
    first.gateway.shutdown()
    await first.task
    worker = await standin()
    second = await serve(functions=[FunctionEntry(HELLO, delivery=quick)], settings=settings)
    second.platform.set_instances(HELLO, [worker.instance()])
    await wait_for(lambda: worker.received)
    assert worker.received[0].event == {"order": 1}
    assert (
        worker.received[0].headers["lambda-runtime-aws-request-id"]
        == (answer.headers["x-amzn-requestid"])
    )
    await wait_for(lambda: not files(tmp_path))
