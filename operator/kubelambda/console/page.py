"""The console's HTML, rendered on the server from `figures.py`'s data: the overview of every
Function and one Function's page with its latest invocations' log lines.

Every value from a manifest or a log is escaped. The pages carry no script: they refresh
themselves (`<meta http-equiv="refresh">`), and charts are inline SVG (`svg.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from kubelambda.api.identity import FunctionKey
from kubelambda.console.figures import Figures, FunctionState, Logs, Overview, path_to_zero
from kubelambda.console.svg import render_chart

__all__ = ["function_page", "overview_page"]

REFRESH_SECONDS = 15
_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#111}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}th,td{padding:.3em .6em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.muted{color:#666}.problem{color:#b91c1c}.charts{display:flex;flex-wrap:wrap;gap:1em}
svg.chart .plot{fill:#fafafa;stroke:#ccc}svg.chart .grid{stroke:#e5e5e5}
svg.chart text{font-size:10px;fill:#444}svg.chart .title{font-size:11px;fill:#111}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
"""


def _document(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
            *body,
            "</body></html>",
        ]
    )


def _name(key: FunctionKey) -> str:
    return key.name if key.namespace == "default" else f"{key.namespace}/{key.name}"


def _href(key: FunctionKey) -> str:
    return f"/functions/{quote(key.namespace, safe='')}/{quote(key.name, safe='')}"


NONE = "-"  # a figure not known


def _ms(seconds: float | None) -> str:
    return NONE if seconds is None else f"{seconds * 1000:.0f} ms"


def _count(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f}"


def _gb_seconds(value: float) -> str:
    # Lambda bills 1 ms x 128 MB = 0.000125 GB-s at the least: three digits after the point
    # would show a few small invocations as 0.
    return f"{value:.4f}" if value < 10 else f"{value:.1f}"


def _when(moment: datetime, now: float) -> str:
    delta = moment.timestamp() - now
    clock = moment.astimezone(UTC).strftime("%H:%M:%S UTC")
    return f"{clock} (in {delta:.0f}s)" if delta >= 0 else clock


def _queued(figures: Figures) -> str:
    queued = _count(figures.backlog)
    if figures.backlog and figures.oldest_event_age_seconds is not None:
        queued += f" (oldest {figures.oldest_event_age_seconds:.0f}s)"
    return queued


def _row(state: FunctionState, figures: Figures, now: float) -> str:
    ticks = "<br>".join(
        f"{escape(trigger)}: {escape(_when(tick, now))}" for trigger, tick in state.next_ticks
    )
    cold = _count(figures.cold_starts)
    if figures.cold_start_seconds is not None:
        cold += f" ({_ms(figures.cold_start_seconds)})"
    ready = f"{state.ready}/{state.desired}"
    if state.ready_condition:
        ready += f' <span class="muted">{escape(state.ready_condition)}</span>'
    cells = [
        f'<td class="function"><a href="{_href(state.key)}">{escape(_name(state.key))}</a></td>',
        f"<td>{ready}</td>",
        f"<td>{escape(path_to_zero(state, figures))}</td>",
        f'<td class="n">{_count(figures.invocations)}</td>',
        f'<td class="n">{_gb_seconds(figures.gb_seconds)}</td>',
        f'<td class="n">{_count(figures.errors)}</td>',
        f'<td class="n">{_count(figures.function_errors)}</td>',
        f'<td class="n">{_ms(figures.p50_seconds)}</td>',
        f'<td class="n">{_ms(figures.p99_seconds)}</td>',
        f'<td class="n">{cold}</td>',
        f'<td class="n">{_count(figures.in_flight)} / {_count(figures.held)}</td>',
        f'<td class="n">{_queued(figures)}</td>',
        f"<td>{ticks or NONE}</td>",
    ]
    return f'<tr data-function="{escape(_name(state.key))}">{"".join(cells)}</tr>'


_HEADER = (
    "<tr><th>function</th><th>ready/desired</th><th>path to zero</th><th>invocations</th>"
    "<th>billed GB-s</th>"
    "<th>5xx answers</th><th>function errors</th><th>p50</th><th>p99</th>"
    "<th>cold starts (mean wait)</th>"
    "<th>in flight / held</th><th>async queued (oldest)</th><th>next schedule ticks</th></tr>"
)


def _head(overview: Overview, title: str) -> list[str]:
    stamp = datetime.fromtimestamp(overview.now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(overview.source)} · {stamp} · counts over the last hour;'
        f" durations are the gateway's (time held for an instance included) · refreshes every"
        f" {REFRESH_SECONDS}s</p>",
    ]
    body += [f'<p class="problem">{escape(problem)}</p>' for problem in overview.problems]
    return body


def _table(overview: Overview, states: list[FunctionState]) -> list[str]:
    rows = [_row(s, overview.figures.get(s.key, Figures()), overview.now) for s in states]
    return ['<table id="functions">', _HEADER, *rows, "</table>"]


def _charts(overview: Overview, key: FunctionKey) -> str:
    charts = overview.charts.get(key, ())
    drawn = "".join(render_chart(chart, now=overview.now) for chart in charts)
    return f'<div class="charts">{drawn or "<p class=muted>no samples yet</p>"}</div>'


def overview_page(overview: Overview) -> str:
    body = _head(overview, "kubelambda console")
    if not overview.states:
        body.append("<p>No Functions.</p>")
    else:
        body += _table(overview, list(overview.states))
    if overview.queued_async is not None:
        body.append(
            f"<p>Asynchronous events waiting in this process's store (all functions):"
            f" {overview.queued_async:.0f}</p>"
        )
    for state in overview.states:
        body.append(
            f'<h2><a href="{_href(state.key)}">{escape(_name(state.key))}</a></h2>'
            + _charts(overview, state.key)
        )
    return _document("kubelambda console", body)


def function_page(overview: Overview, key: FunctionKey, logs: Logs) -> str | None:
    """One function's page; None when the overview has no such function."""
    states = [s for s in overview.states if s.key == key]
    if not states:
        return None
    body = _head(overview, f"kubelambda console: {_name(key)}")
    body.append('<p><a href="/">all functions</a></p>')
    body += _table(overview, states)
    body.append(_charts(overview, key))
    body.append("<h2>Latest invocations</h2>")
    if logs.note:
        body.append(f'<p class="muted">{escape(logs.note)}</p>')
    for invocation in logs.invocations:
        status = "" if invocation.report else " (running)"
        where = (
            f' <span class="muted">{escape(invocation.where)}</span>' if invocation.where else ""
        )
        body.append(
            f'<h3 class="invocation">{escape(invocation.request_id)}{status}{where}</h3>'
            f"<pre>{escape(chr(10).join(invocation.lines))}</pre>"
        )
    return _document(f"kubelambda console: {_name(key)}", body)
