"""A durable `DeliveryStore`: one file per job in a state directory, reloaded at start, so a
restarted gateway resumes the deliveries it had accepted.

`open_store` (commands/serving.py) opens it when `GatewaySettings.delivery_state_dir` is
set; the S3 notification endpoint (gateway/sources/s3.py) calls `admit`, which syncs the
files before it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from kubelambda.clock import Clock
from kubelambda.delivery.codec import decode_job, encode_job
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.store import DueJobs

__all__ = ["FileDeliveryStore"]

log = logging.getLogger(__name__)

_SUFFIX = ".job"
_TEMP = ".tmp"
_CORRUPT = ".corrupt"


def _write(path: Path, data: bytes, *, sync: bool) -> None:
    # Write aside, then rename: a reader (the next start) sees the old file or the new
    # one, never half of one.
    temp = path.with_name(path.name + _TEMP)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def _sync_directory(directory: Path) -> None:
    # The renames themselves are durable only once the directory is synced.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileDeliveryStore:
    """Jobs in a heap by due time, each also a file `<directory>/<n>-<id>.job`.

    Files are written when a job is accepted and rewritten when it is retried (so a
    restart keeps its tries and due time), and removed when it is done. `admit` syncs
    them (file and directory) before it returns: what it accepted survives a crash of
    the machine. `offer` and `retry` write without syncing, which survives a crash of
    the gateway process but not of the machine; they run on the event loop, where a
    sync could stall every request. A job that was being delivered when the gateway
    stopped is delivered again after the restart: delivery is at least once.
    """

    def __init__(self, *, directory: Path, capacity: int, clock: Clock) -> None:
        self.directory = directory
        self.capacity = capacity
        self._clock = clock
        self._jobs = DueJobs(clock)
        self._files: dict[int, Path] = {}  # id(job) -> its file, while the store holds it
        self._reserved = 0  # places held by an `admit` still writing
        self._names = itertools.count()
        directory.mkdir(parents=True, exist_ok=True)
        self.reloaded = self._reload()

    def __len__(self) -> int:
        return len(self._jobs) + self._reserved

    # loading

    def _reload(self) -> int:
        now, wall = self._clock.monotonic(), self._clock.wall()
        found: list[tuple[float, str, DeliveryJob, Path]] = []
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(_TEMP):
                # Never renamed into place: its admit failed, or the process died first.
                path.unlink(missing_ok=True)
                continue
            if not path.name.endswith(_SUFFIX):
                continue
            try:
                job, due_wall = decode_job(path.read_bytes())
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Kept aside for a person to look at, never delivered half-understood.
                log.error("delivery file %s is unreadable (%s); moved aside", path, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(path.name + _CORRUPT))
                continue
            found.append((due_wall, path.name, job, path))
        # File names start with a counter that restarts with the process: order by due
        # time, then by name, which is arrival order within one run.
        found.sort(key=lambda item: (item[0], item[1]))
        for due_wall, _, job, path in found:
            job.due = now + max(0.0, due_wall - wall)
            self._files[id(job)] = path
            self._jobs.push(job)
        if found:
            log.info("resuming %d undelivered events from %s", len(found), self.directory)
        return len(found)

    # writing

    def _path(self, job: DeliveryJob) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job.id)[:64]
        # Wall time in the name keeps names unique across runs; the counter within one.
        return (
            self.directory
            / f"{int(self._clock.wall() * 1e6):x}-{next(self._names):06x}-{safe}{_SUFFIX}"
        )

    def _due_wall(self, job: DeliveryJob) -> float:
        return self._clock.wall() + (job.due - self._clock.monotonic())

    def _write_all(self, writes: Sequence[tuple[Path, bytes]]) -> None:
        done: list[Path] = []
        try:
            for path, data in writes:
                _write(path, data, sync=True)
                done.append(path)
            _sync_directory(self.directory)
        except OSError:
            for path in done:
                path.unlink(missing_ok=True)
            raise

    async def admit(self, jobs: Sequence[DeliveryJob]) -> bool:
        """Accept all of `jobs` (due now) once their files are on disk, or none of them:
        False when they do not fit. Raises OSError when the files cannot be written."""
        count = len(jobs)
        if len(self) + count > self.capacity:
            return False
        self._reserved += count
        try:
            now = self._clock.monotonic()
            writes = []
            for job in jobs:
                job.due = now
                writes.append((self._path(job), encode_job(job, due_wall=self._clock.wall())))
            # Off the event loop: a sync takes milliseconds on a slow disk.
            await asyncio.to_thread(self._write_all, writes)
        finally:
            self._reserved -= count
        for job, (path, _) in zip(jobs, writes, strict=True):
            self._files[id(job)] = path
            self._jobs.push(job)
        return True

    def offer(self, job: DeliveryJob) -> bool:
        if len(self) >= self.capacity:
            return False
        job.due = self._clock.monotonic()
        path = self._path(job)
        try:
            _write(path, encode_job(job, due_wall=self._clock.wall()), sync=False)
        except OSError as exc:
            log.error("cannot record event %s in %s: %s", job.id, self.directory, exc)
            return False
        self._files[id(job)] = path
        self._jobs.push(job)
        return True

    # the delivery workers' side

    async def take(self) -> DeliveryJob:
        return await self._jobs.take()

    async def retry(self, job: DeliveryJob, *, due: float) -> None:
        self._jobs.release()
        job.due = due
        path = self._files.get(id(job))
        if path is not None:
            try:
                _write(path, encode_job(job, due_wall=self._due_wall(job)), sync=False)
            except OSError as exc:
                # The old file still holds the job: a restart would try it once more.
                log.error("cannot update %s: %s", path, exc)
        self._jobs.push(job)

    async def done(self, job: DeliveryJob) -> None:
        self._jobs.release()
        path = self._files.pop(id(job), None)
        if path is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                # Left behind, the job is delivered again after a restart: a duplicate.
                log.error("cannot remove %s: %s", path, exc)
