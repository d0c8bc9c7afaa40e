"""Charts drawn on the server as inline SVG: one line per series over the last hour, with its
axis labels and legend. No script and nothing fetched: the page (`page.py`) embeds the text."""

from __future__ import annotations

import math
from html import escape

from kubelambda.console.figures import WINDOW_SECONDS, Chart

__all__ = ["nice_ceiling", "render_chart"]

WIDTH, HEIGHT = 420, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 22, 20  # margins for the labels
COLOURS = ("#2563eb", "#dc2626", "#059669", "#d97706")


def nice_ceiling(value: float) -> float:
    """The axis top for `value`: 1, 2 or 5 times a power of ten, at least `value` (1 for 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return 10.0 * power


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def render_chart(chart: Chart, *, now: float, window: float = WINDOW_SECONDS) -> str:
    """The chart as an `<svg>` element; x spans [now - window, now], y [0, a nice top]."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    start = now - window
    top = nice_ceiling(
        max((v for s in chart.series for _, v in s.points if math.isfinite(v)), default=0.0)
    )

    def x(t: float) -> float:
        return LEFT + plot_w * min(max((t - start) / window, 0.0), 1.0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(max(v / top, 0.0), 1.0))

    title = escape(f"{chart.title} ({chart.unit})" if chart.unit else chart.title)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}">',
        f'<text x="{LEFT}" y="14" class="title">{title}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
        f'<line x1="{LEFT}" y1="{y(top / 2):.1f}" x2="{LEFT + plot_w}" y2="{y(top / 2):.1f}"'
        ' class="grid"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" class="axis" text-anchor="end">{_number(top)}</text>',
        f'<text x="{LEFT - 4}" y="{y(top / 2) + 4:.1f}" class="axis" text-anchor="end">'
        f"{_number(top / 2)}</text>",
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" class="axis" text-anchor="end">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 4}" class="axis">-{window / 60:.0f} min</text>',
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 4}" class="axis" text-anchor="end">now</text>',
    ]
    legend_x = LEFT + plot_w
    for index, series in reversed(list(enumerate(chart.series))):
        colour = COLOURS[index % len(COLOURS)]
        label = escape(series.label)
        legend_x -= 8 + 7 * len(series.label) + 12
        parts.append(
            f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 13}" y="15" class="legend">{label}</text>'
        )
        points = [(t, v) for t, v in series.points if math.isfinite(v) and t >= start]
        if points:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(points)
            )
            parts.append(
                f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"'
                f' class="series" data-series="{label}" data-points="{len(points)}"/>'
            )
    if not any(s.points for s in chart.series):
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" class="axis"'
            ' text-anchor="middle">no data yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
