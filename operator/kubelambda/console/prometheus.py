"""The console's figures and charts on a cluster: two PromQL queries to Prometheus's HTTP API
per page (one instant, one range over the last hour), over the gateways' and dispatchers'
metrics (docs/contracts.md, Metrics), computed as local mode's `samples.py` computes them.

`cluster.py` calls `figures` and `charts`; `fetch` is injectable (tests answer from a table).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Final

from kubelambda.api.identity import FunctionKey
from kubelambda.console.figures import WINDOW_SECONDS, Chart, Figures, Series

__all__ = ["PrometheusError", "PrometheusReader", "charts_query", "figures_query"]

Fetch = Callable[[str, float], bytes]
BY: Final = "sum by (namespace, function)"
STEP_SECONDS: Final = 60.0
_GATEWAY: Final = "kubelambda_gateway_"
_RUNTIME: Final = "kubelambda_runtime_invocations_total"


class PrometheusError(Exception):
    """Prometheus could not be asked, or did not answer a usable result; the message says why."""


def _tagged(expression: str, name: str) -> str:
    # Each part of the union gets its own `q` label, so one query returns them all.
    return f'label_replace({expression}, "q", "{name}", "", "")'


def figures_query(window: str = "1h") -> str:
    """One instant query: each figure of `Figures` per namespace and function, told apart by q."""
    duration = f"{_GATEWAY}request_duration_seconds_bucket[{window}]"
    cold = f"{_GATEWAY}cold_start_seconds"
    parts = {
        "invocations": f"{BY} (increase({_GATEWAY}billed_invocations_total[{window}]))",
        "gb_seconds": f"{BY} (increase({_GATEWAY}billed_gb_seconds_total[{window}]))",
        "errors": f'{BY} (increase({_GATEWAY}requests_total{{code=~"5.."}}[{window}]))',
        # Needs the function pods scraped (the chart's podMonitor.functions).
        # 0 where the runtimes are scraped and none failed; absent where they are not scraped.
        "function_errors": f'({BY} (increase({_RUNTIME}{{outcome=~"error|timeout|crash"}}'
        f"[{window}])) or {BY} (increase({_RUNTIME}[{window}])) * 0)",
        "p50": f"histogram_quantile(0.5, sum by (namespace, function, le) (increase({duration})))",
        "p99": f"histogram_quantile(0.99, sum by (namespace, function, le) (increase({duration})))",
        "cold_starts": f"{BY} (increase({_GATEWAY}cold_starts_total[{window}]))",
        "cold_start_mean": f"{BY} (increase({cold}_sum[{window}]))"
        f" / {BY} (increase({cold}_count[{window}]))",
        "in_flight": f"{BY} ({_GATEWAY}in_flight_requests)",
        "held": f"{BY} ({_GATEWAY}queued_requests)",
        # Every dispatcher reports the whole backlog: max, not sum (docs/contracts.md).
        "backlog": "max by (namespace, function) (kubelambda_async_backlog)",
        "oldest_age": "max by (namespace, function) (kubelambda_async_oldest_event_age_seconds)",
    }
    return " or ".join(_tagged(expression, name) for name, expression in parts.items())


def charts_query() -> str:
    """One range query: requests and 5xx answers per minute, requests in flight and held."""
    requests = f"{_GATEWAY}requests_total"
    parts = {
        "requests": f"{BY} (rate({requests}[2m])) * 60",
        "errors": f'{BY} (rate({requests}{{code=~"5.."}}[2m])) * 60',
        "in_flight": f"{BY} ({_GATEWAY}in_flight_requests)",
        "held": f"{BY} ({_GATEWAY}queued_requests)",
    }
    return " or ".join(_tagged(expression, name) for name, expression in parts.items())


def _urlopen(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


def _number(text: object) -> float | None:
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _key(series: dict[str, Any]) -> tuple[FunctionKey, str] | None:
    labels = series.get("metric") or {}
    namespace, name, part = labels.get("namespace"), labels.get("function"), labels.get("q")
    if not namespace or not name or not part:
        return None
    return FunctionKey(namespace, name), part


class PrometheusReader:
    """Asks the Prometheus at `url` (e.g. http://prometheus-server.monitoring.svc:9090)."""

    def __init__(self, url: str, *, fetch: Fetch = _urlopen, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._fetch = fetch
        self._timeout = timeout

    def _ask(self, path: str, params: dict[str, str], result_type: str) -> list[dict[str, Any]]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            body = self._fetch(url, self._timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise PrometheusError(
                f"Prometheus at {self.url} answered {exc.code}: {detail}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from exc
        try:
            document = json.loads(body)
            data = document["data"]
            if document.get("status") != "success" or data.get("resultType") != result_type:
                raise ValueError(document.get("error") or data.get("resultType"))
            result: list[dict[str, Any]] = data["result"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PrometheusError(
                f"{self.url} did not answer a {result_type} as Prometheus's query API does: {exc}"
            ) from exc
        return result

    def figures(self) -> dict[FunctionKey, Figures]:
        found: dict[FunctionKey, dict[str, float | None]] = {}
        for series in self._ask("/api/v1/query", {"query": figures_query()}, "vector"):
            keyed = _key(series)
            if keyed is not None:
                found.setdefault(keyed[0], {})[keyed[1]] = _number(series["value"][1])
        return {key: _figures(values) for key, values in found.items()}

    def charts(self, now: float) -> dict[FunctionKey, tuple[Chart, ...]]:
        params = {
            "query": charts_query(),
            "start": f"{now - WINDOW_SECONDS:.3f}",
            "end": f"{now:.3f}",
            "step": f"{STEP_SECONDS:g}",
        }
        found: dict[FunctionKey, dict[str, tuple[tuple[float, float], ...]]] = {}
        for series in self._ask("/api/v1/query_range", params, "matrix"):
            keyed = _key(series)
            if keyed is None:
                continue
            points = tuple(
                (float(t), value)
                for t, text in series.get("values", [])
                if (value := _number(text)) is not None
            )
            found.setdefault(keyed[0], {})[keyed[1]] = points
        return {
            key: (
                Chart(
                    "requests per minute",
                    "/min",
                    (
                        Series("requests", parts.get("requests", ())),
                        Series("5xx", parts.get("errors", ())),
                    ),
                ),
                Chart(
                    "concurrency",
                    "",
                    (
                        Series("in flight", parts.get("in_flight", ())),
                        Series("held", parts.get("held", ())),
                    ),
                ),
            )
            for key, parts in found.items()
        }


def _figures(values: dict[str, float | None]) -> Figures:
    return Figures(
        invocations=values.get("invocations") or 0.0,
        gb_seconds=values.get("gb_seconds") or 0.0,
        errors=values.get("errors") or 0.0,
        function_errors=values.get("function_errors"),
        p50_seconds=values.get("p50"),
        p99_seconds=values.get("p99"),
        cold_starts=values.get("cold_starts") or 0.0,
        cold_start_seconds=values.get("cold_start_mean"),
        in_flight=values.get("in_flight") or 0.0,
        held=values.get("held") or 0.0,
        backlog=values.get("backlog"),
        oldest_event_age_seconds=values.get("oldest_age"),
    )
