"""Runtime metrics: counted as numbers, rendered in Prometheus' format."""

from __future__ import annotations

from kubelambda_runtime.server.metrics import RuntimeStats, render
from kubelambda_runtime.wire.histogram import DURATION_BUCKETS, Histogram


def test_render_names_and_labels():
    stats = RuntimeStats(namespace="ns", function="fn")
    stats.count("success", 0.01)
    stats.count("busy", 0.0)
    text, content_type = render(stats)
    assert content_type.startswith("text/plain")
    lines = text.decode().splitlines()
    assert (
        'kubelambda_runtime_invocations_total{function="fn",namespace="ns",outcome="busy"} 1.0'
        in lines
    )
    # rejected requests never ran the handler: they are not in the duration histogram
    assert 'kubelambda_runtime_duration_seconds_count{function="fn",namespace="ns"} 1.0' in lines


def test_plus_adds_what_the_workers_counted():
    stats = RuntimeStats(namespace="ns", function="fn")
    stats.count("busy", 0.0)
    stats.count("timeout", 3.0)
    theirs = Histogram(DURATION_BUCKETS)
    theirs.observe(0.01)
    total = stats.plus({"success": 4, "busy": 1}, theirs)
    assert total.invocations == {"busy": 2, "timeout": 1, "success": 4}
    assert sum(total.duration.counts) == 2 and total.duration.total == 3.01
    assert stats.invocations == {"busy": 1, "timeout": 1}  # the server's own stay its own


def test_a_failing_init_shows_as_a_gauge():
    stats = RuntimeStats(namespace="ns", function="fn")
    gauge = 'kubelambda_runtime_init_failed{function="fn",namespace="ns"}'
    assert f"{gauge} 0.0" in render(stats)[0].decode().splitlines()
    stats.init_failed = 1
    assert (
        f"{gauge} 1.0"
        in render(stats.plus({}, Histogram(DURATION_BUCKETS)))[0].decode().splitlines()
    )
