"""`kubelambda gateway --drain-seconds`: how long SIGTERM's drain lasts, refused when it makes
no sense (the chart sets it from gateway.drainSeconds)."""

from __future__ import annotations

import pytest

from kubelambda.commands.gateway import build_parser


@pytest.mark.parametrize(("argv", "seconds"), [((), 0.0), (("--drain-seconds=5",), 5.0)])
def test_the_drain_lasts_what_the_flag_says(argv: tuple[str, ...], seconds: float) -> None:
    assert build_parser().parse_args(argv).drain_seconds == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "from 0 to 300 seconds"), ("301", "from 0 to 300 seconds"), ("soon", "not a number")],
)
def test_a_drain_that_makes_no_sense_is_refused_with_why(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([f"--drain-seconds={value}"])
    assert message in capsys.readouterr().err
