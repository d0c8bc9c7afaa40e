"""How benchmarks/burst.py and burst_cluster.py describe a load's answers: which step
dominated the slowest of them, the gateway's own count of a function's answers and their time,
statuses and the reasons of errors, and a target's verdict.
"""

from __future__ import annotations

import re
import urllib.request

from burst_load import Answers


def dominant(run: Answers, indexes: list[int]) -> str:
    """Which step took most of the slowest 1% of these answers' time."""
    if not indexes:
        return "n/a"
    slowest = sorted(indexes, key=lambda i: run.latency[i])[-max(1, len(indexes) // 100) :]
    parts = {
        "the load generator running late": sum(run.lag[i] for i in slowest),
        "connecting (the gateway's accept queue)": sum(run.connect[i] for i in slowest),
        "held for an instance": sum(run.held[i] for i in slowest),
        "the gateway's queues and work, and the instance": sum(
            run.latency[i] - run.lag[i] - run.connect[i] - run.held[i] for i in slowest
        ),
    }
    total = sum(parts.values()) or 1.0
    name, value = max(parts.items(), key=lambda item: item[1])
    return f"{name} ({100 * value / total:.0f}% of the slowest 1%)"


def inside(admin: int, name: str) -> tuple[float, int]:
    """The gateway's own count of `name`'s answers and their summed time, parse to answer."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    found = {}
    for part in ("sum", "count"):
        pattern = (
            rf'kubelambda_gateway_request_duration_seconds_{part}\{{[^}}]*function="{name}"'
            rf"[^}}]*\}} (\S+)"
        )
        match = re.search(pattern, text)
        found[part] = float(match.group(1)) if match else 0.0
    return found["sum"], int(found["count"])


def split(run: Answers, before: tuple[float, int], after: tuple[float, int]) -> str:
    """Mean answer time as the client saw it, and the part the gateway saw (parse to answer)."""
    count = after[1] - before[1]
    within = 1000 * (after[0] - before[0]) / count if count else float("nan")
    seen = sum(run.latency) / len(run.latency) if run.latency else float("nan")
    return f"mean {seen:.1f} ms, of which {within:.1f} ms between the gateway's parse and answer"


def print_warm(warm: Answers, *, fraction: float, rate: float, label: str = "warm") -> float:
    """Print an open loop's line at `fraction` of the capacity (errors, p50, p99, what
    dominates), the warm phase's unless `label` says otherwise; return its p99."""
    everything = warm.where()
    warm_p99 = warm.p(warm.latency, everything, 0.99)
    print(
        f"  {label:<10} open loop at {fraction:.0%} = {rate:.0f} req/s: errors {warm.errors} "
        f"({statuses(warm)}); p50 {warm.p(warm.latency, everything, 0.5):.1f} ms, p99 "
        f"{warm_p99:.1f} ms; dominated by {dominant(warm, everything)}"
    )
    return warm_p99


def statuses(run: Answers) -> str:
    seen = ", ".join(f"{status}: {n}" for status, n in sorted(run.statuses.items()))
    why = "; ".join(f"{n}x '{reason}…'" for reason, n in run.reasons.most_common(3))
    return f"{seen}; no answer: {run.unanswered}" + (f"; errors: {why}" if why else "")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"
