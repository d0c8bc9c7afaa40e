"""Progress lines for the harness's long build steps, on stderr: one line when a step starts (what,
why it may take long, about how long), progress while it runs, one line when it is done with its
time, and one line for a step found cached. `builds.run_step`, `binaries`, `gomodules`, `images`
and `debian` report through `REPORTER`; `scripts/build-parts` and `scripts/build-images` show it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

Meter = Callable[[], str]
"""How far a running phase is, in its natural unit ("412 of 1951 packages", "180 MiB
downloaded"), or "" while there is nothing to say. Called from the ticker thread only, so a meter
that takes a moment (a directory walk, `go list`) never delays the build itself."""

TTY_INTERVAL = 2.0  # seconds between redraws of the progress line on a terminal
LOG_INTERVAL = 60.0  # seconds between progress lines in a log: a CI log shows life, not noise
CLEAR = "\r\x1b[K"  # back to column 0 and erase the line; only ever written to a terminal


def duration(seconds: float) -> str:
    """A measured time as people read it: "41 s", "3 min 12 s", "1 h 2 min"."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def estimate(seconds: float) -> str:
    """An expected time, rounded as an estimate deserves: "about 20 s", "about 6 min"."""
    if seconds < 55:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    return f"about {max(1, round(seconds / 60))} min"


def home_relative(path: Path | str) -> str:
    """`path` with the home folder written as ~, so lines stay short and say where to look."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home) :] if text == home or text.startswith(home + os.sep) else text


class Step:
    """One long step in flight: its phases ("[2/3] go mod tidy") and the current one's meter."""

    def __init__(self, what: str, *, phases: int | None, started: float) -> None:
        self.what = what
        self.phases = phases
        self.started = started
        self.phase = ""
        self.phase_number = 0
        self.meter: Meter | None = None
        self.child: Step | None = None  # an inner step in flight speaks for both
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        """Add a figure to the done line, e.g. the build's peak memory."""
        self.notes.append(text)

    def phase_label(self) -> str:
        if not self.phase:
            return ""
        if self.phases and self.phases > 1:
            return f"[{self.phase_number}/{self.phases}] {self.phase}"
        return self.phase


class Reporter:
    """Writes progress lines to `stream` (sys.stderr by default, looked up on every write).

    On a terminal the progress line is redrawn in place every `TTY_INTERVAL`; anywhere else
    (a CI log, a file, a pipe) every line is plain text and progress comes every `LOG_INTERVAL`.
    `clock`, `tty` and `interval` are injectable for tests; `ticking=False` leaves the
    periodic lines to explicit `tick()` calls.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        prefix: str = "harness",
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        interval: float | None = None,
        ticking: bool = True,
    ) -> None:
        self._stream = stream
        self.prefix = prefix
        self.clock = clock
        self._tty = tty
        self._interval = interval
        self.ticking = ticking
        self._lock = threading.Lock()
        self._local = threading.local()
        self._drawn = False  # a progress line is on the terminal without its newline

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def is_tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError, OSError):  # a closed or fake stream
            return False

    @property
    def interval(self) -> float:
        if self._interval is not None:
            return self._interval
        return TTY_INTERVAL if self.is_tty() else LOG_INTERVAL

    def _stack(self) -> list[Step]:
        # Per thread: a step and the run_step calls inside it always share a thread.
        stack: list[Step] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def line(self, text: str) -> None:
        """One whole line, after erasing a progress line left on the terminal."""
        with self._lock:
            stream = self.stream
            if self._drawn:
                stream.write(CLEAR)
                self._drawn = False
            stream.write(f"{self.prefix}: {text}\n")
            stream.flush()

    def _progress(self, text: str, *, stop: threading.Event | None = None) -> None:
        if not self.is_tty():
            with self._lock:
                if stop is None or not stop.is_set():
                    self.stream.write(f"{self.prefix}: {text}\n")
                    self.stream.flush()
            return
        full = f"{self.prefix}: {text}"
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            width = 80
        with self._lock:
            if stop is not None and stop.is_set():
                return
            # Longer than the terminal, the line would wrap and \r could not take it back.
            self.stream.write(CLEAR + full[: max(width - 1, 10)])
            self.stream.flush()
            self._drawn = True

    def cached(self, what: str, *, where: Path | str | None = None) -> None:
        self.line(f"{what}: cached" + (f" in {home_relative(where)}" if where else ""))

    @contextmanager
    def step(
        self,
        what: str,
        *,
        doing: str = "",
        why: str = "",
        expect: float | None = None,
        phases: int | None = None,
    ) -> Iterator[Step]:
        """Report a step: its start line now, progress while the body runs, and a done line
        with its time (or a failed line, the exception going on untouched)."""
        details = "; ".join(part for part in (why, estimate(expect) if expect else "") if part)
        self.line(what + (f": {doing}" if doing else "") + (f" ({details})" if details else ""))
        step = Step(what, phases=phases, started=self.clock())
        stack = self._stack()
        parent = stack[-1] if stack else None
        if parent is not None:
            parent.child = step
        stack.append(step)
        stop = threading.Event()
        if self.ticking:
            # Not joined when the step ends: a meter in the middle of a slow reading must not
            # hold up the build; `stop`, checked under the lock, keeps its line from landing
            # after the done line.
            threading.Thread(target=self._tick_until, args=(step, stop), daemon=True).start()
        failed = False
        try:
            yield step
        except BaseException:
            failed = True
            raise
        finally:
            with self._lock:
                stop.set()
            stack.pop()
            if parent is not None:
                parent.child = None
            took = duration(self.clock() - step.started)
            if failed:
                self.line(f"{what}: failed after {took}")
            else:
                notes = f" ({'; '.join(step.notes)})" if step.notes else ""
                self.line(f"{what}: done in {took}{notes}")

    @contextmanager
    def phase(self, what: str, *, meter: Meter | None = None) -> Iterator[None]:
        """A part of the step in flight (one line when it begins, its meter in progress lines);
        with no step in flight, a step of its own."""
        stack = self._stack()
        if not stack:
            with self.step(what) as step:
                step.meter = meter
                yield
            return
        step = stack[-1]
        step.phase_number += 1
        step.phase, step.meter = what, meter
        self._progress(f"{step.what}: {step.phase_label()}")
        try:
            yield
        finally:
            step.phase, step.meter = "", None

    def status(self, step: Step) -> str:
        """The progress line of `step`: phase, meter reading and time so far."""
        reading = ""
        if step.meter is not None:
            try:
                reading = step.meter()
            except Exception:  # a meter only informs: it must never break a build
                reading = ""
        label = step.phase_label()
        text = f"{step.what}: {label}" if label else step.what
        if reading:
            text += f": {reading}"
        return f"{text}, {duration(self.clock() - step.started)} so far"

    def tick(self, step: Step | None = None, *, stop: threading.Event | None = None) -> None:
        """Write the progress line of `step` (default: this thread's innermost step in flight)."""
        if step is None:
            stack = self._stack()
            if not stack:
                return
            step = stack[-1]
        if step.child is None:
            self._progress(self.status(step), stop=stop)

    def _tick_until(self, step: Step, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.tick(step, stop=stop)


REPORTER = Reporter()
"""What the harness's builds report through."""
