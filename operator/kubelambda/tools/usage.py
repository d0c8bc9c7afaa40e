"""What functions used over a window, as Lambda bills it: invocations and GB-seconds per
namespace and function, from the gateway's billed counters in Prometheus (one PromQL query).

``kubelambda usage`` (commands/usage.py) calls `fetch_usage` and prints `format_table`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_PROMETHEUS_URL",
    "GB_SECOND_USD",
    "PROMETHEUS_URL_VARIABLE",
    "REQUEST_USD",
    "UsageError",
    "UsageRow",
    "fetch_usage",
    "format_table",
    "usage_query",
]

DEFAULT_PROMETHEUS_URL: Final = "http://127.0.0.1:9090"
PROMETHEUS_URL_VARIABLE: Final = "KUBELAMBDA_PROMETHEUS_URL"
INVOCATIONS_METRIC: Final = "kubelambda_gateway_billed_invocations_total"
GB_SECONDS_METRIC: Final = "kubelambda_gateway_billed_gb_seconds_total"
# Lambda's on-demand x86 prices in us-east-1 (first pricing tier), for the estimate only.
GB_SECOND_USD: Final = 0.0000166667
REQUEST_USD: Final = 0.20 / 1_000_000

_WINDOW = re.compile(r"[1-9][0-9]*(ms|s|m|h|d|w|y)")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

Fetch = Callable[[str, float], bytes]


class UsageError(Exception):
    """The usage could not be read; the message names why."""


@dataclass(frozen=True)
class UsageRow:
    namespace: str
    function: str
    invocations: float
    gb_seconds: float

    @property
    def estimated_usd(self) -> float:
        return self.invocations * REQUEST_USD + self.gb_seconds * GB_SECOND_USD


def usage_query(*, window: str, namespace: str | None = None) -> str:
    """One PromQL expression: each counter's increase over `window` by namespace and function,
    told apart by a `usage` label."""
    if not _WINDOW.fullmatch(window):
        raise UsageError(f"--since {window!r} is not a duration such as 1h, 24h or 7d")
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        raise UsageError(f"--namespace {namespace!r} is not a Kubernetes namespace name")
    selector = f'{{namespace="{namespace}"}}' if namespace else '{function!=""}'
    parts = [
        f"label_replace(sum by (namespace, function) (increase({metric}{selector}[{window}])),"
        f' "usage", "{name}", "", "")'
        for name, metric in (("invocations", INVOCATIONS_METRIC), ("gb_seconds", GB_SECONDS_METRIC))
    ]
    return " or ".join(parts)


def _urlopen(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


def fetch_usage(
    prometheus_url: str,
    *,
    window: str,
    namespace: str | None = None,
    timeout: float = 10.0,
    fetch: Fetch = _urlopen,
) -> list[UsageRow]:
    """The usage rows from the Prometheus at `prometheus_url`, sorted by namespace and name."""
    query = usage_query(window=window, namespace=namespace)
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        body = fetch(url, timeout)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise UsageError(f"Prometheus at {prometheus_url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UsageError(f"cannot reach Prometheus at {prometheus_url}: {exc}") from exc
    try:
        document = json.loads(body)
        series: list[dict[str, Any]] = document["data"]["result"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{prometheus_url} did not answer as Prometheus's query API") from exc
    return rows_of(series)


def rows_of(series: list[dict[str, Any]]) -> list[UsageRow]:
    """Rows from the query's instant vector (a function with one counter only gets 0 for the
    other)."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for one in series:
        labels = one["metric"]
        key = (labels.get("namespace", ""), labels.get("function", ""))
        found.setdefault(key, {})[labels.get("usage", "")] = float(one["value"][1])
    return [
        UsageRow(
            namespace=namespace,
            function=function,
            invocations=values.get("invocations", 0.0),
            gb_seconds=values.get("gb_seconds", 0.0),
        )
        for (namespace, function), values in sorted(found.items())
    ]


def format_table(rows: list[UsageRow], *, window: str, cost: bool = True) -> str:
    """The rows as aligned columns, with a total line and what the figures are."""
    header = ["NAMESPACE", "FUNCTION", "INVOCATIONS", "GB-SECONDS"]
    if cost:
        header.append("EST. USD")
    lines = [header]
    for row in rows:
        line = [row.namespace, row.function, f"{row.invocations:.0f}", f"{row.gb_seconds:.3f}"]
        if cost:
            line.append(f"{row.estimated_usd:.6f}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    if not rows:
        text.append(f"(no invocations in the last {window})")
    note = (
        f"Over the last {window}, as Prometheus's increase() estimates it from the gateway's"
        " counters (billed duration rounded up to 1 ms, times memory; 1 GB = 1024 MB)."
    )
    text.append(note)
    if cost:
        text.append(
            "EST. USD: an estimate at Lambda's on-demand x86 price in us-east-1"
            f" (${GB_SECOND_USD:.10f} per GB-second, $0.20 per million requests), free tier not"
            " deducted."
        )
    return "\n".join(text) + "\n"
