"""The cluster's figures and charts: the PromQL asked, and Prometheus's answers turned into
the console's figures (from recorded-shape answers, through an injected fetch)."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.console.prometheus import (
    PrometheusError,
    PrometheusReader,
    charts_query,
    figures_query,
)

HELLO = FunctionKey("default", "hello")


def _vector(*series: tuple[str, str]) -> bytes:
    result = [
        {"metric": {"namespace": "default", "function": "hello", "q": q}, "value": [1, value]}
        for q, value in series
    ]
    result.append({"metric": {"q": "errors"}, "value": [1, "3"]})  # no function: left out
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


class Fetch:
    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        self.urls.append(url)
        return self.answer


def test_figures_are_read_from_one_instant_query() -> None:
    fetch = Fetch(
        _vector(
            ("invocations", "12"),
            ("gb_seconds", "1.5"),
            ("errors", "2"),
            ("function_errors", "4"),
            ("p50", "0.02"),
            ("p99", "NaN"),  # histogram_quantile of nothing
            ("cold_starts", "1"),
            ("cold_start_mean", "0.8"),
            ("in_flight", "3"),
            ("held", "0"),
            ("backlog", "7"),
            ("oldest_age", "42.5"),
        )
    )
    figures = PrometheusReader("http://prom:9090/", fetch=fetch).figures()
    assert list(figures) == [HELLO]
    hello = figures[HELLO]
    assert (hello.invocations, hello.errors, hello.cold_starts) == (12, 2, 1)
    assert hello.function_errors == 4
    assert (hello.p50_seconds, hello.p99_seconds, hello.cold_start_seconds) == (0.02, None, 0.8)
    assert (hello.in_flight, hello.held, hello.backlog) == (3, 0, 7)
    assert hello.oldest_event_age_seconds == 42.5
    assert hello.gb_seconds == 1.5
    url = urllib.parse.urlsplit(fetch.urls[0])
    assert url.path == "/api/v1/query"
    assert urllib.parse.parse_qs(url.query)["query"] == [figures_query()]


def test_the_queries_name_the_contracts_metrics() -> None:
    query = figures_query()
    for name in (
        "kubelambda_gateway_billed_invocations_total",
        "kubelambda_gateway_billed_gb_seconds_total",
        'kubelambda_gateway_requests_total{code=~"5.."}',
        "kubelambda_gateway_request_duration_seconds_bucket",
        "kubelambda_gateway_cold_starts_total",
        "kubelambda_gateway_cold_start_seconds_sum",
        "kubelambda_gateway_in_flight_requests",
        "kubelambda_gateway_queued_requests",
        "max by (namespace, function) (kubelambda_async_backlog)",
        # Every dispatcher reports every function's oldest event: max, not sum.
        "max by (namespace, function) (kubelambda_async_oldest_event_age_seconds)",
        'kubelambda_runtime_invocations_total{outcome=~"error|timeout|crash"}',
    ):
        assert name in query
    assert "kubelambda_gateway_requests_total" in charts_query()


def test_charts_come_from_one_range_query_over_the_last_hour() -> None:
    matrix = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"namespace": "default", "function": "hello", "q": "requests"},
                    "values": [[100, "6"], [160, "NaN"], [220, "12"]],
                }
            ],
        },
    }
    fetch = Fetch(json.dumps(matrix).encode())
    charts = PrometheusReader("http://prom:9090", fetch=fetch).charts(4000.0)
    requests = charts[HELLO][0].series[0]
    assert requests.label == "requests" and requests.points == ((100.0, 6.0), (220.0, 12.0))
    assert charts[HELLO][0].series[1].points == ()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(fetch.urls[0]).query)
    assert (query["start"], query["end"], query["step"]) == (["400.000"], ["4000.000"], ["60"])


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"not json", "did not answer a vector"),
        (b'{"status": "error", "error": "parse error", "data": {}}', "parse error"),
        (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', "matrix"),
    ],
)
def test_an_answer_that_is_not_a_vector_is_an_error_naming_it(answer: bytes, message: str) -> None:
    with pytest.raises(PrometheusError, match=message):
        PrometheusReader("http://prom:9090", fetch=Fetch(answer)).figures()


def test_an_unreachable_prometheus_is_an_error_naming_it() -> None:
    def refuse(url: str, timeout: float) -> bytes:
        raise ConnectionRefusedError("refused")

    with pytest.raises(PrometheusError, match="cannot reach Prometheus at http://prom:9090"):
        PrometheusReader("http://prom:9090", fetch=refuse).figures()
