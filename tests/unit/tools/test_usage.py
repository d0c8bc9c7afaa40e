"""`kubelambda usage`'s logic (tools/usage.py): one PromQL query, its answer as table rows."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse

import pytest

from kubelambda.tools.usage import (
    GB_SECOND_USD,
    REQUEST_USD,
    UsageError,
    UsageRow,
    fetch_usage,
    format_table,
    usage_query,
)


def _series(namespace: str, function: str, usage: str, value: str) -> dict[str, object]:
    labels = {"namespace": namespace, "function": function, "usage": usage}
    return {"metric": labels, "value": [1700000000.0, value]}


ANSWER = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            _series("shop", "cart", "gb_seconds", "1.5"),
            _series("default", "api", "invocations", "3"),
            _series("default", "api", "gb_seconds", "0.45"),
            _series("shop", "cart", "invocations", "10.2"),
        ],
    },
}


def test_one_query_asks_for_both_counters_by_namespace_and_function() -> None:
    query = usage_query(window="7d", namespace="shop")
    assert query.count("increase(") == 2
    assert 'kubelambda_gateway_billed_invocations_total{namespace="shop"}[7d]' in query
    assert 'kubelambda_gateway_billed_gb_seconds_total{namespace="shop"}[7d]' in query
    assert query.count("sum by (namespace, function)") == 2
    assert '{function!=""}[1h]' in usage_query(window="1h")


@pytest.mark.parametrize(
    ("window", "namespace", "problem"),
    [("1 hour", None, "--since"), ("0h", None, "--since"), ("1h", 'a"} or up{', "--namespace")],
)
def test_bad_flags_are_refused_naming_the_flag(
    window: str, namespace: str | None, problem: str
) -> None:
    with pytest.raises(UsageError, match=problem):
        usage_query(window=window, namespace=namespace)


def test_the_answer_becomes_rows_sorted_by_namespace_and_function() -> None:
    asked: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        asked.append(url)
        return json.dumps(ANSWER).encode()

    rows = fetch_usage("http://prom:9090/", window="24h", fetch=fetch)
    assert rows == [
        UsageRow("default", "api", invocations=3.0, gb_seconds=0.45),
        UsageRow("shop", "cart", invocations=10.2, gb_seconds=1.5),
    ]
    [url] = asked
    assert url.startswith("http://prom:9090/api/v1/query?query=")
    assert urllib.parse.parse_qs(url.partition("?")[2])["query"] == [usage_query(window="24h")]


def test_the_table_has_a_row_per_function_and_labels_the_cost_an_estimate() -> None:
    rows = [UsageRow("default", "api", invocations=1_000_000.0, gb_seconds=1000.0)]
    text = format_table(rows, window="24h")
    header, row, *notes = text.splitlines()
    assert header.split() == ["NAMESPACE", "FUNCTION", "INVOCATIONS", "GB-SECONDS", "EST.", "USD"]
    assert row.split() == ["default", "api", "1000000", "1000.000", "0.216667"]
    assert pytest.approx(0.216667, abs=1e-6) == 1_000_000 * REQUEST_USD + 1000 * GB_SECOND_USD
    assert any("estimate" in note for note in notes)
    assert "USD" not in format_table(rows, window="24h", cost=False)
    assert "(no invocations in the last 1h)" in format_table([], window="1h")


def test_an_unreachable_or_foreign_prometheus_is_a_usage_error() -> None:
    def refused(url: str, timeout: float) -> bytes:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(UsageError, match="cannot reach Prometheus at http://prom:9090"):
        fetch_usage("http://prom:9090", window="1h", fetch=refused)
    with pytest.raises(UsageError, match="did not answer as Prometheus"):
        fetch_usage("http://prom:9090", window="1h", fetch=lambda url, timeout: b"<html>")
