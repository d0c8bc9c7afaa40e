"""The PromQL the autoscaler sends and how it reads the answer."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest

from kubelambda.autoscaler.decider import Tuning
from kubelambda.autoscaler.prometheus import PrometheusError, PrometheusSource, parse, query


def answer(*series: tuple[str, str, str, str]) -> bytes:
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"namespace": ns, "function": fn, "q": q}, "value": [1.0, value]}
                    for ns, fn, q, value in series
                ],
            },
        }
    ).encode()


def test_one_query_covers_both_windows_and_sums_over_gateways():
    text = query(Tuning(stable_window_seconds=60, panic_window_seconds=6))
    assert text.count("label_replace") == 8
    assert "[60000ms]" in text and "[6000ms]" in text
    assert text.count("sum by (namespace, function)") == 7
    # dispatchers each report the whole backlog: the largest, not the sum
    assert "max by (namespace, function) (kubelambda_async_backlog)" in text
    assert "rate(kubelambda_gateway_requests_total[6000ms])" in text


def test_a_backlog_of_asynchronous_events_is_demand_for_one_instance():
    observations = parse(
        answer(
            ("ns", "busy", "backlog", "500"),
            ("ns", "queued", "backlog", "2"),
            ("ns", "queued", "queued_now", "4"),
            ("ns", "idle", "backlog", "0"),
        )
    )
    assert observations[("ns", "busy")].queued == 1  # woken, and kept from zero
    assert observations[("ns", "queued")].queued == 4
    assert observations[("ns", "idle")].queued == 0


def test_parse_adds_in_flight_and_queued_and_defaults_missing_parts_to_zero():
    observations = parse(
        answer(
            ("ns", "a", "stable_in_flight", "2"),
            ("ns", "a", "stable_queued", "1.5"),
            ("ns", "a", "panic_in_flight", "4"),
            ("ns", "a", "panic_rps", "10"),
            ("ns", "a", "queued_now", "3"),
            ("ns", "b", "stable_rps", "NaN"),
            ("", "", "stable_rps", "9"),  # requests that matched no function
        )
    )
    a = observations[("ns", "a")]
    assert (a.stable_concurrency, a.panic_concurrency, a.panic_rps, a.queued) == (3.5, 4, 10, 3)
    assert a.stable_rps == 0
    assert observations[("ns", "b")].stable_rps == 0  # NaN from an empty window reads as 0
    assert set(observations) == {("ns", "a"), ("ns", "b")}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b'{"status": "error", "error": "parse error"}', "parse error"),
        (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', "matrix"),
    ],
)
def test_unusable_answers_raise_naming_what_prometheus_said(body, message):
    with pytest.raises(PrometheusError, match=message):
        parse(body)


def test_source_sends_the_query_once_per_observe():
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return answer(("ns", "a", "queued_now", "1"))

    source = PrometheusSource("http://prometheus:9090/", fetch=fetch)
    observations = asyncio.run(source.observe(now=0.0))
    assert observations[("ns", "a")].queued == 1
    assert len(asked) == 1
    assert asked[0].startswith("http://prometheus:9090/api/v1/query?query=")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(asked[0]).query)["query"] == [query()]
