"""Charts as inline SVG: a path through the points within the hour, labels escaped, an empty
chart says so."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from kubelambda.console.figures import Chart, Series
from kubelambda.console.svg import nice_ceiling, render_chart

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (1.2, 2), (3, 5), (7, 10), (42, 50), (-1, 1)]
)
def test_the_axis_top_is_a_round_number_above_the_value(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_a_series_is_a_path_through_its_points_in_the_window() -> None:
    chart = Chart(
        "requests per minute",
        "/min",
        (
            Series(
                "requests", ((NOW - 7200, 5.0), (NOW - 3600, 0.0), (NOW - 1800, 10.0), (NOW, 20.0))
            ),
        ),
    )
    svg = render_chart(chart, now=NOW)
    ET.fromstring(svg)  # well-formed
    path = re.search(r'<path d="([^"]+)"[^>]*data-points="(\d+)"', svg)
    assert path is not None
    assert path[2] == "3"  # the point two hours ago is outside the chart
    points = re.findall(r"[ML]([\d.]+),([\d.]+)", path[1])
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    assert xs == sorted(xs) and xs[0] == 44.0 and xs[-1] == 412.0  # from the left edge to now
    assert ys[2] < ys[1] < ys[0]  # higher values are drawn higher


def test_labels_are_escaped_and_an_empty_chart_says_no_data() -> None:
    svg = render_chart(Chart("<b>", "", (Series("a&b", ()),)), now=NOW)
    ET.fromstring(svg)
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a&amp;b" in svg
    assert "no data yet" in svg and "<path" not in svg
