"""The local platform when its zygote is gone or stuck (platforms/local/zygote.py), on real
processes in the test's own event loop: instances start as new Python processes meanwhile,
those forked before serve on, the zygote comes back, and closing the platform leaves nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from kubelambda.api import Function, load_manifests
from kubelambda.api.identity import FunctionKey
from kubelambda.platforms.local.functions import prepare
from kubelambda.platforms.local.platform import LocalPlatform
from kubelambda.platforms.local.zygote import Zygote
from support.manifests import inline_function
from support.waiting import wait_for_async

pytestmark = pytest.mark.anyio

HANDLER = "import os\ndef handler(event, context):\n    return os.getpid()\n"
KEY = FunctionKey("default", "hello")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Lines(list[str]):
    def said(self, text: str) -> bool:
        return any(text in line for line in self)


def running(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has ended (one the dead zygote left is init's to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


@dataclass
class Served:
    platform: LocalPlatform
    zygote: Zygote
    lines: Lines


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Callable[..., Served]]:
    """``platform(**zygote_options)``: the local platform serving `hello`, with a zygote of
    its own; closed after the test, when neither the zygote nor an instance may be left."""
    path = tmp_path / "hello.yaml"
    path.write_text(yaml.safe_dump(inline_function("hello", HANDLER)))
    (function,) = [o for o in load_manifests(path) if isinstance(o, Function)]
    local = prepare(function, workdir=tmp_path, region="us-east-1", account_id="000000000000")
    made: list[Served] = []

    def make(**options: float) -> Served:
        lines = Lines()
        zygote = Zygote(output=lines.append, **options)
        served = LocalPlatform(functions=[local], output=lines.append, zygote=zygote)
        made.append(Served(served, zygote, lines))
        return made[-1]

    yield make
    for served in made:
        pids = [int(i.id.rpartition("-")[2]) for i in served.platform.ready_instances(KEY)]
        if served.zygote.pid is not None:
            pids.append(served.zygote.pid)
        async with asyncio.timeout(30):
            await served.platform.aclose()
        for pid in pids:
            assert not running(pid), f"{pid} outlived the platform"


async def instances(platform: LocalPlatform, count: int) -> list[int]:
    """Scale to ``count``, wait until as many are ready; their runtimes' pids, oldest first."""
    await platform.scale(KEY, count, reason="the test")
    await wait_for_async(
        lambda: len(platform.ready_instances(KEY)) == count, seconds=30, what=f"{count} ready"
    )
    return [int(i.id.rpartition("-")[2]) for i in platform.ready_instances(KEY)]


async def answers(platform: LocalPlatform) -> list[int]:
    async with httpx.AsyncClient(timeout=10) as client:
        found = []
        for instance in platform.ready_instances(KEY):
            url = (
                f"http://{instance.host}:{instance.port}/2015-03-31/functions/function/invocations"
            )
            answer = await client.post(url, content=b"{}")
            found.append(answer.json())
        return found


async def test_while_the_zygote_is_down_instances_start_as_new_processes(platform):
    local = platform(restart_seconds=60.0)
    (forked,) = await instances(local.platform, 1)
    assert parent(forked) == local.zygote.pid
    os.kill(local.zygote.pid, signal.SIGKILL)
    await wait_for_async(
        lambda: local.lines.said("exited with -9; instances start as new Python processes"),
        seconds=10,
        what="local mode to say the fork server died",
    )
    (_, spawned) = await instances(local.platform, 2)
    assert parent(spawned) == os.getpid()  # a new process, local mode's own child
    assert len(set(await answers(local.platform))) == 2  # the one forked before serves on


async def test_a_stuck_zygote_is_replaced_and_the_instance_starts_all_the_same(platform):
    local = platform(spawn_timeout=0.5, restart_seconds=0.1)
    await instances(local.platform, 1)  # it answers, so it has imported everything
    stuck = local.zygote.pid
    os.kill(stuck, signal.SIGSTOP)
    (_, spawned) = await instances(local.platform, 2)
    assert parent(spawned) == os.getpid()
    assert local.lines.said("stopping the runtime's fork server: it did not answer within 0.5 s")
    await wait_for_async(
        lambda: local.lines.said("fork server is back"), seconds=20, what="a new zygote"
    )
    assert local.zygote.pid != stuck
    (*_, forked) = await instances(local.platform, 3)
    assert parent(forked) == local.zygote.pid
