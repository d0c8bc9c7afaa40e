"""``kubelambda operator --metrics-port``: off unless set, and a number that is no port is
refused by name."""

from __future__ import annotations

import pytest

from kubelambda.commands.operator_options import build_parser, config_from_args


def test_the_metrics_port_is_off_by_default() -> None:
    assert build_parser().parse_args([]).metrics_port == 0
    assert build_parser().parse_args(["--metrics-port", "9090"]).metrics_port == 9090


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_a_metrics_port_out_of_range_is_refused(port: str) -> None:
    args = build_parser().parse_args(["--metrics-port", port])
    with pytest.raises(SystemExit, match="--metrics-port"):
        config_from_args(args)
