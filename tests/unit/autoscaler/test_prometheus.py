"""The PromQL the autoscaler sends and how it reads the answer."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse

import pytest

from kubelambda.autoscaler.decider import Tuning
from kubelambda.autoscaler.prometheus import (
    KEPT_SECONDS,
    ROTATING,
    PrometheusError,
    PrometheusSource,
    parse,
    parts,
    query,
)

GATEWAY = {"job": "kubelambda-gateway", "instance": "10.0.0.1:9091"}


def target(part: str, job: str, instance: str, value: str = "1") -> dict[str, object]:
    return {"metric": {"q": part, "job": job, "instance": instance}, "value": [1.0, value]}


def answer(
    *series: tuple[str, str, str, str], targets: list[dict[str, object]] | None = None
) -> bytes:
    """An answer to the tick's query: load by function, and (by default) one healthy gateway."""
    listed = [target("gateway", **GATEWAY)] if targets is None else targets
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"namespace": ns, "function": fn, "q": q}, "value": [1.0, value]}
                    for ns, fn, q, value in series
                ]
                + listed,
            },
        }
    ).encode()


def test_one_query_covers_both_windows_and_sums_over_gateways():
    text = query(Tuning(stable_window_seconds=60, panic_window_seconds=6))
    assert text.count("label_replace") == 11
    assert "[60000ms]" in text and "[6000ms]" in text
    assert text.count("sum by (namespace, function)") == 7
    # dispatchers each report the whole backlog: the largest, not the sum
    assert "max by (namespace, function) (kubelambda_async_backlog > 0)" in text
    assert "rate(kubelambda_gateway_requests_total[6000ms]) > 0" in text


def test_every_load_part_lists_only_series_with_load():
    # The answer's size follows the busy functions: an idle series is filtered out by
    # Prometheus, before the sum (a sum of the positive terms is the same sum).
    load = [(name, expr) for name, expr in parts() if "namespace, function" in expr]
    assert len(load) == 8
    for name, expr in load:
        assert expr.endswith(" > 0)"), f"{name} lists idle functions: {expr}"


def test_the_query_asks_which_targets_export_and_which_are_down_or_late():
    asked = dict(parts(fresh_seconds=20))
    assert asked["gateway"] == "group by (job, instance) (kubelambda_gateway_in_flight_requests)"
    assert asked["dispatcher"] == "group by (job, instance) (kubelambda_async_backlog)"
    assert asked["unhealthy"] == "up == 0 or time() - timestamp(up) > 20"


GATEWAY_2 = ("kubelambda-gateway", "10.0.0.2:9091")
DISPATCHER = ("kubelambda-dispatcher", "10.0.0.3:9090")


@pytest.mark.parametrize(
    ("targets", "complete"),
    [
        pytest.param([target("gateway", *GATEWAY_2)], True, id="every gateway scraped just now"),
        pytest.param([], False, id="no gateway scraped (Prometheus new, or all of them down)"),
        pytest.param(
            [target("gateway", *GATEWAY_2), target("unhealthy", "kubelambda-gateway", "10.0.0.9")],
            False,
            id="a gateway of the job is down: its functions' series are missing, not zero",
        ),
        pytest.param(
            [
                target("gateway", *GATEWAY_2),
                target("unhealthy", "kubelambda-gateway", "10.0.0.2:9091", "42"),
            ],
            False,
            id="a gateway not scraped for 42 s",
        ),
        pytest.param(
            [target("gateway", *GATEWAY_2), target("unhealthy", "node-exporter", "10.0.0.9")],
            True,
            id="a target of another job is down",
        ),
        pytest.param(
            [
                target("gateway", *GATEWAY_2),
                target("dispatcher", *DISPATCHER),
                target("unhealthy", "kubelambda-dispatcher", "10.0.0.4:9090"),
            ],
            False,
            id="a dispatcher is down: its backlog is missing",
        ),
        pytest.param(
            [target("dispatcher", *DISPATCHER)], False, id="dispatchers scraped, no gateway"
        ),
    ],
)
def test_functions_missing_from_the_answer_are_idle_only_when_every_scrape_is_fresh(
    targets, complete
):
    observed = parse(answer(("ns", "busy", "panic_rps", "3"), targets=targets))
    assert observed.complete is complete
    assert set(observed.functions) == {("ns", "busy")}


def test_a_backlog_of_asynchronous_events_is_demand_for_one_instance():
    observations = parse(
        answer(
            ("ns", "busy", "backlog", "500"),
            ("ns", "queued", "backlog", "2"),
            ("ns", "queued", "queued_now", "4"),
            ("ns", "idle", "backlog", "0"),
        )
    ).functions
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
    ).functions
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
    observations = asyncio.run(source.observe(now=0.0)).functions
    assert observations[("ns", "a")].queued == 1
    assert len(asked) == 1
    assert asked[0].startswith("http://prometheus:9090/api/v1/query?query=")
    # The first tick asks every part: nothing is kept yet.
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(asked[0]).query)["query"] == [query()]


def asked_parts(url: str) -> set[str]:
    promql = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["query"][0]
    return set(re.findall(r'"q", "(\w+)"', promql))


class Prometheus:
    """Answers each part asked with the series `load` gives it, plus a healthy gateway."""

    def __init__(self) -> None:
        self.load: dict[str, str] = {}
        self.asked: list[set[str]] = []
        self.fail = False

    def __call__(self, url: str) -> bytes:
        parts = asked_parts(url)
        self.asked.append(parts)
        if self.fail:
            raise OSError("connection refused")
        series = [("ns", "a", q, value) for q, value in self.load.items() if q in parts]
        listed = [target("gateway", **GATEWAY)] if "gateway" in parts else []
        return answer(*series, targets=listed)


def test_slow_parts_are_asked_in_turn_and_their_last_answer_is_kept_between():
    everything = {name for name, _ in parts()}
    every_tick = everything - {name for group in ROTATING for name in group}
    assert every_tick == {
        "panic_in_flight",
        "panic_queued",
        "panic_rps",
        "queued_now",
        "backlog",
        "unhealthy",
    }
    prometheus = Prometheus()
    prometheus.load = {"stable_in_flight": "2", "stable_rps": "4", "panic_rps": "1"}
    source = PrometheusSource("http://prometheus:9090", fetch=prometheus)
    seen = [asyncio.run(source.observe(now=float(n))) for n in range(6)]
    assert prometheus.asked[0] == everything
    for n, parts_asked in enumerate(prometheus.asked[1:], 1):
        assert parts_asked == every_tick | set(ROTATING[n % len(ROTATING)])
    for observed in seen:
        # The stable window's average and the gateway seen are kept between their turns.
        assert observed.complete
        a = observed.functions[("ns", "a")]
        assert (a.stable_concurrency, a.stable_rps, a.panic_rps) == (2, 4, 1)

    # A part's new answer replaces the kept one: a function gone from it is gone.
    prometheus.load = {"panic_rps": "1"}
    for n in range(len(ROTATING)):
        asyncio.run(source.observe(now=10.0 + n))
    a = asyncio.run(source.observe(now=20.0)).functions[("ns", "a")]
    assert (a.stable_concurrency, a.stable_rps) == (0, 0)


@pytest.mark.parametrize(
    ("gap", "asked_again"),
    [
        pytest.param(3.0, set(ROTATING[1]), id="kept answers young: the turn that failed"),
        pytest.param(KEPT_SECONDS + 1, {name for group in ROTATING for name in group}, id="old"),
    ],
)
def test_after_failed_ticks_kept_answers_are_used_only_while_young(gap, asked_again):
    prometheus = Prometheus()
    prometheus.load = {"stable_in_flight": "2", "panic_rps": "1"}
    source = PrometheusSource("http://prometheus:9090", fetch=prometheus)
    asyncio.run(source.observe(now=0.0))
    prometheus.fail = True
    with pytest.raises(OSError, match="refused"):
        asyncio.run(source.observe(now=1.0))
    prometheus.fail = False
    observed = asyncio.run(source.observe(now=gap))
    rotating = {name for group in ROTATING for name in group}
    assert prometheus.asked[-1] & rotating == asked_again
    assert observed.complete
    assert observed.functions[("ns", "a")].stable_concurrency == 2
