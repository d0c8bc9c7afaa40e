"""The progress lines of the harness's long build steps (tests/harness/progress.py) and the
meters and estimates the builds feed them (builds, gomodules, debian), read from a captured
stream: start, progress and done lines, the cached line, plain text unless on a terminal."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from harness import debian, gomodules
from harness.builds import Measure, PartUnavailable, last_seconds, run_step
from harness.progress import CLEAR, Reporter, duration, estimate, home_relative
from support.waiting import wait_for


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def quiet(stream: io.StringIO, clock: Clock, *, tty: bool | None = None) -> Reporter:
    """A reporter whose progress lines come only from explicit tick() calls."""
    return Reporter(stream, clock=clock, tty=tty, ticking=False)


def test_a_step_says_what_it_does_how_far_it_is_and_how_long_it_took() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = quiet(out, clock)
    downloaded = ["12 MiB downloaded"]
    with reporter.step(
        "etcd v3.5.35",
        doing="building from its Go module",
        why="first run only, cached in ~/.cache/kubelambda/bin",
        expect=180,
        phases=2,
    ) as step:
        with reporter.phase("go mod tidy", meter=lambda: downloaded[0]):
            clock.now += 20
            reporter.tick()
        with reporter.phase("go build etcd"):
            clock.now += 81
            reporter.tick()
        step.note("peak 417 MiB")
    assert out.getvalue().splitlines() == [
        "harness: etcd v3.5.35: building from its Go module "
        "(first run only, cached in ~/.cache/kubelambda/bin; about 3 min)",
        "harness: etcd v3.5.35: [1/2] go mod tidy",
        "harness: etcd v3.5.35: [1/2] go mod tidy: 12 MiB downloaded, 20 s so far",
        "harness: etcd v3.5.35: [2/2] go build etcd",
        "harness: etcd v3.5.35: [2/2] go build etcd, 1 min 41 s so far",
        "harness: etcd v3.5.35: done in 1 min 41 s (peak 417 MiB)",
    ]


def test_a_cached_step_is_one_line() -> None:
    out = io.StringIO()
    quiet(out, Clock()).cached("image localhost/kubelambda-pause:0a1b", where="/srv/images/p.tar")
    assert (
        out.getvalue()
        == "harness: image localhost/kubelambda-pause:0a1b: cached in /srv/images/p.tar\n"
    )


def test_a_failed_step_says_so_and_the_error_goes_on() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = quiet(out, clock)

    def build() -> None:
        with reporter.step("minio v0"):
            clock.now += 7
            raise PartUnavailable("go build exited 2")

    with pytest.raises(PartUnavailable, match="exited 2"):
        build()
    assert out.getvalue().splitlines() == [
        "harness: minio v0",
        "harness: minio v0: failed after 7 s",
    ]


@pytest.mark.parametrize(
    ("stream", "tty", "control_codes"),
    [
        (io.StringIO(), None, False),  # a log file or a pipe, as in CI
        (TtyStream(), False, False),  # a terminal, told not to draw
        (TtyStream(), None, True),  # a terminal
    ],
)
def test_control_codes_only_on_a_terminal(
    stream: io.StringIO, tty: bool | None, control_codes: bool
) -> None:
    clock = Clock()
    reporter = quiet(stream, clock, tty=tty)
    with reporter.step("etcd v3.5.35", doing="building", phases=1):
        with reporter.phase("go build", meter=lambda: "10 of up to 1951 packages compiled"):
            clock.now += 3
            reporter.tick()
        reporter.cached("kubectl v1.34.5")
    text = stream.getvalue()
    assert ("\x1b" in text or "\r" in text) is control_codes
    # Either way every line ends whole, and the progress reading is there to see.
    assert text.endswith("harness: kubectl v1.34.5: cached\nharness: etcd v3.5.35: done in 3 s\n")
    assert "go build: 10 of up to 1951 packages compiled, 3 s so far" in text


def test_on_a_terminal_a_long_progress_line_is_cut_to_its_width() -> None:
    out = TtyStream()  # no file descriptor: taken as 80 columns wide
    reporter = quiet(out, Clock())
    with reporter.step("minio " + "v0.0.0-20260212201848-7aac2a2c5b7c" * 3):
        reporter.tick()
    drawn = out.getvalue().split(CLEAR)[1]
    assert len(drawn) == 79
    assert "\n" not in drawn


def test_on_a_terminal_progress_is_redrawn_in_place_and_erased_before_the_next_line() -> None:
    out, clock = TtyStream(), Clock()
    reporter = quiet(out, clock)
    with reporter.step("nats-server v2.15.3"), reporter.phase("go build"):
        reporter.tick()
        clock.now += 2
        reporter.tick()
    assert out.getvalue() == (
        "harness: nats-server v2.15.3\n"
        f"{CLEAR}harness: nats-server v2.15.3: go build"
        f"{CLEAR}harness: nats-server v2.15.3: go build, 0 s so far"
        f"{CLEAR}harness: nats-server v2.15.3: go build, 2 s so far"
        f"{CLEAR}harness: nats-server v2.15.3: done in 2 s\n"
    )


def test_the_ticker_reports_a_running_step_by_itself() -> None:
    out = io.StringIO()
    reporter = Reporter(out, interval=0.01)
    with reporter.step("kafka 4.4.0"), reporter.phase("mvn", meter=lambda: "3 jars"):
        wait_for(lambda: "mvn: 3 jars" in out.getvalue(), timeout=10, what="a progress line")
    # Nothing from the ticker after the done line.
    assert out.getvalue().splitlines()[-1].startswith("harness: kafka 4.4.0: done in")


def test_an_inner_step_speaks_for_the_outer_one() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = quiet(out, clock)
    with reporter.step("image runtime") as outer:
        with reporter.step("image root bookworm"):
            reporter.tick(outer)  # the outer step's ticker stays quiet meanwhile
            reporter.tick()
        reporter.tick(outer)
    assert out.getvalue().splitlines() == [
        "harness: image runtime",
        "harness: image root bookworm",
        "harness: image root bookworm, 0 s so far",
        "harness: image root bookworm: done in 0 s",
        "harness: image runtime, 0 s so far",
        "harness: image runtime: done in 0 s",
    ]


def test_a_meter_that_fails_does_not_break_the_build() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = quiet(out, clock)

    def broken() -> str:
        raise OSError("log gone")

    with reporter.step("etcd v3.5.35"), reporter.phase("go build", meter=broken):
        reporter.tick()
    assert "harness: etcd v3.5.35: go build, 0 s so far" in out.getvalue().splitlines()


def test_run_step_reports_itself_as_a_step_or_as_a_phase(tmp_path: Path) -> None:
    out, clock = io.StringIO(), Clock()
    reporter = quiet(out, clock)

    def step(what: str, code: int = 0) -> None:
        run_step(
            [sys.executable, "-c", f"raise SystemExit({code})"],
            what=what,
            log=tmp_path / "build.log",
            cwd=tmp_path,
            env={},
            measure=Measure(),
            how_to_get="n/a",
            reporter=reporter,
        )

    step("python -c")

    def part() -> None:
        with reporter.step("a part", phases=2):
            step("first")
            step("second", code=3)

    with pytest.raises(PartUnavailable, match="exited 3"):
        part()
    assert out.getvalue().splitlines() == [
        "harness: python -c",
        "harness: python -c: done in 0 s",
        "harness: a part",
        "harness: a part: [1/2] first",
        "harness: a part: [2/2] second",
        "harness: a part: failed after 0 s",
    ]


def test_run_step_reports_on_stderr_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_step(
        [sys.executable, "-c", "pass"],
        what="a cheap step",
        log=tmp_path / "build.log",
        cwd=tmp_path,
        env={},
        measure=Measure(),
        how_to_get="n/a",
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("harness: a cheap step\nharness: a cheap step: done in ")
    assert "\x1b" not in captured.err


def test_estimates_come_from_the_last_recorded_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELAMBDA_CACHE", str(tmp_path))
    assert last_seconds("etcd") is None  # no figures yet: the built-in ones apply
    entries = [
        {"part": "etcd", "version": "v3.5.34", "seconds": 120.0},
        {"part": "kube-apiserver", "version": "v1.34.12", "seconds": 352.6},
        {"part": "etcd", "version": "v3.5.35", "seconds": 88.8},
    ]
    lines = [json.dumps(entry) for entry in entries] + ['{"part": "etcd", "sec']  # cut short
    (tmp_path / "build-times.jsonl").write_text("\n".join(lines) + "\n")
    assert last_seconds("etcd") == 88.8
    assert last_seconds("minio") is None


def test_the_package_meter_counts_what_go_build_v_compiled_since_it_began(tmp_path: Path) -> None:
    log = tmp_path / "kubernetes.log"
    log.write_text("internal/abi\nfrom an earlier build\n")
    asked: list[int] = []

    def total() -> int:
        asked.append(1)
        return 1951

    meter = gomodules.package_meter(log, total=total)
    assert meter() == "0 of up to 1951 packages compiled"
    with log.open("a") as out:
        out.write("\n$ (cd /x && go build -v ...)\ninternal/goarch\nk8s.io/api/core/v1\n")
        out.write("go: downloading example.com/m v1.0.0\n# k8s.io/x\nvet: note\n")
    assert meter() == "2 of up to 1951 packages compiled"
    assert asked == [1]  # `go list` runs once, not on every reading
    assert gomodules.package_meter(log, total=lambda: None)() == "0 compiled"


def test_the_download_meter_counts_the_bytes_the_module_cache_gained(tmp_path: Path) -> None:
    (tmp_path / "old.zip").write_bytes(b"x" * 2**20)
    meter = gomodules.download_meter(tmp_path, every=0.0)
    assert meter() == "0 MiB downloaded"
    (tmp_path / "k8s.io" / "api" / "@v").mkdir(parents=True)
    (tmp_path / "k8s.io" / "api" / "@v" / "v0.34.12.zip").write_bytes(b"x" * 3 * 2**20)
    assert meter() == "3 MiB downloaded"
    slow = gomodules.download_meter(tmp_path, every=3600.0)
    assert slow() == "0 MiB downloaded"
    (tmp_path / "k8s.io" / "api" / "@v" / "v0.34.13.zip").write_bytes(b"x" * 2**20)
    assert slow() == "0 MiB downloaded"  # the folder is not walked again so soon
    assert meter() == "4 MiB downloaded"


def test_the_install_meter_counts_the_packages_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {name: tmp_path / name for name in ("runc", "buildah", "gcc")}
    monkeypatch.setattr(debian, "NODE_PACKAGES", {name: str(p) for name, p in files.items()})
    meter = debian.installed_meter(debian.missing_packages())
    assert meter() == "0 of 3 packages installed"
    files["runc"].touch()
    files["gcc"].touch()
    assert meter() == "2 of 3 packages installed"


@pytest.mark.parametrize(
    ("seconds", "measured", "expected"),
    [
        (0.4, "0 s", "about 5 s"),
        (41.2, "41 s", "about 40 s"),
        (60, "1 min", "about 1 min"),
        (192, "3 min 12 s", "about 3 min"),
        (352.6, "5 min 53 s", "about 6 min"),
        (3720, "1 h 2 min", "about 62 min"),
    ],
)
def test_times_read_as_people_say_them(seconds: float, measured: str, expected: str) -> None:
    assert duration(seconds) == measured
    assert estimate(seconds) == expected


def test_paths_under_home_are_written_with_a_tilde() -> None:
    home = Path.home()
    assert home_relative(home / ".cache" / "kubelambda") == "~/.cache/kubelambda"
    assert home_relative(f"{home}x/elsewhere") == f"{home}x/elsewhere"
    assert home_relative("/srv/cache") == "/srv/cache"
