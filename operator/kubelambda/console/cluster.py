"""The console's source on a cluster: Functions, Triggers and their Deployments read from the
API server (get/list only), figures and charts from Prometheus (`prometheus.py`).

`kubelambda console` builds it over a `KubeClient`. The API server is the one thing a page
cannot do without (SourceError); Prometheus missing or failing leaves the state shown and says
why. Pod logs are read (`pod_logs.py`) only when given a reader: they may hold whatever a
handler printed, so the chart grants them only with console.readLogs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from kubelambda.api.errors import SpecError
from kubelambda.api.function import parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import FUNCTION_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from kubelambda.console.app import SourceError
from kubelambda.console.figures import Chart, Figures, FunctionState, Logs, Overview
from kubelambda.console.pod_logs import LogLimits, LogReader, read_function_logs
from kubelambda.console.prometheus import PrometheusError, PrometheusReader
from kubelambda.platforms.kubernetes.client import ObjectList
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION, TRIGGER, Kind

__all__ = ["ClusterSource", "KubeReader", "states_of"]

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class KubeReader(Protocol):
    """What the console asks the API server (`KubeClient` has it)."""

    def list_objects(
        self, kind: Kind, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList: ...


def _key(obj: JSON) -> FunctionKey:
    meta = obj.get("metadata") or {}
    return FunctionKey(str(meta.get("namespace", "")), str(meta.get("name", "")))


def _ready_condition(function: JSON) -> str:
    for condition in (function.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            reason = condition.get("reason")
            status = str(condition.get("status", "Unknown"))
            return status if status == "True" or not reason else f"{status}: {reason}"
    return "Unknown"


def _tick(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def states_of(
    functions: Sequence[JSON], deployments: Sequence[JSON], triggers: Sequence[JSON]
) -> tuple[list[FunctionState], list[str]]:
    """Each Function's state from its object, its Deployment (by the function label) and its
    schedule Triggers' `status.nextTick`; and the problems met (a Function the models refuse
    is shown with the defaults)."""
    by_function: dict[FunctionKey, JSON] = {}
    for deployment in deployments:
        name = ((deployment.get("metadata") or {}).get("labels") or {}).get(FUNCTION_LABEL)
        if name:
            by_function[FunctionKey(_key(deployment).namespace, name)] = deployment
    ticks: dict[FunctionKey, list[tuple[str, datetime]]] = {}
    for trigger in triggers:
        spec = trigger.get("spec") or {}
        tick = _tick((trigger.get("status") or {}).get("nextTick"))
        if "schedule" in spec and tick is not None:
            key = FunctionKey(_key(trigger).namespace, str(spec.get("function", "")))
            ticks.setdefault(key, []).append((_key(trigger).name, tick))
    states, problems = [], []
    for obj in functions:
        key = _key(obj)
        try:
            scaling = parse_function(obj).scaling
            bounds = (scaling.min_replicas, scaling.max_replicas)
            after = float(scaling.scale_to_zero_after_seconds)
        except SpecError as exc:
            problems.append(f"Function {key}: {exc}")
            bounds, after = (0, 0), 0.0
        deployment = by_function.get(key) or {}
        status = deployment.get("status") or {}
        states.append(
            FunctionState(
                key=key,
                desired=int((deployment.get("spec") or {}).get("replicas") or 0),
                ready=int(status.get("readyReplicas") or 0),
                min_replicas=bounds[0],
                max_replicas=bounds[1],
                scale_to_zero_after_seconds=after,
                ready_condition=_ready_condition(obj),
                next_ticks=tuple(sorted(ticks.get(key, []), key=lambda t: t[1])),
            )
        )
    states.sort(key=lambda s: (s.key.namespace, s.key.name))
    return states, problems


class ClusterSource:
    def __init__(
        self,
        *,
        kube: KubeReader,
        prometheus: PrometheusReader | None,
        namespaces: Sequence[str] = (),
        wall: Callable[[], float],
        logs: LogReader | None = None,
        log_limits: LogLimits | None = None,
    ) -> None:
        """`namespaces`: where to read (a release for named namespaces is granted only those);
        none: every namespace. `logs`: how to read pod logs; None: they are not read."""
        self._kube = kube
        self._logs = logs
        self._log_limits = log_limits or LogLimits()
        self._prometheus = prometheus
        self._namespaces = tuple(namespaces)
        self._wall = wall

    def _list(self, kind: Kind, selector: str | None = None) -> list[JSON]:
        items: list[JSON] = []
        for namespace in self._namespaces or (None,):
            try:
                found = self._kube.list_objects(kind, namespace=namespace, label_selector=selector)
            except ApiError as exc:
                where = f"namespace {namespace}" if namespace else "all namespaces"
                raise SourceError(f"cannot list {kind} in {where}: {exc}") from exc
            items += found.items
        return items

    def _read_state(self) -> tuple[list[FunctionState], list[str]]:
        functions = self._list(FUNCTION)
        triggers = self._list(TRIGGER)
        deployments = self._list(DEPLOYMENT, f"{MANAGED_BY_LABEL}={MANAGED_BY}")
        return states_of(functions, deployments, triggers)

    def _read_metrics(
        self, now: float
    ) -> tuple[dict[FunctionKey, Figures], dict[FunctionKey, tuple[Chart, ...]], list[str]]:
        if self._prometheus is None:
            return {}, {}, ["no Prometheus given (--prometheus): figures and charts are not shown"]
        try:
            return self._prometheus.figures(), self._prometheus.charts(now), []
        except PrometheusError as exc:
            log.warning("console: %s", exc)
            return {}, {}, [str(exc)]

    async def overview(self) -> Overview:
        now = self._wall()
        (states, problems), (figures, charts, missing) = await asyncio.gather(
            asyncio.to_thread(self._read_state), asyncio.to_thread(self._read_metrics, now)
        )
        return Overview(
            now=now,
            source="cluster" + (f", {', '.join(self._namespaces)}" if self._namespaces else ""),
            states=states,
            figures=_only(figures, states),
            charts=charts,
            problems=(*problems, *missing),
        )

    async def logs(self, key: FunctionKey, *, last: int) -> Logs:
        if self._logs is None:
            return Logs(
                [],
                note="This console reads no pod logs (they may hold what handlers print): start"
                " it with --read-logs (the chart: console.readLogs=true), or run"
                f" `kubelambda logs {key.name} --cluster -n {key.namespace}`.",
            )
        return await read_function_logs(self._logs, key, last=last, limits=self._log_limits)


def _only(
    figures: Mapping[FunctionKey, Figures], states: Sequence[FunctionState]
) -> dict[FunctionKey, Figures]:
    keys = {state.key for state in states}
    return {key: value for key, value in figures.items() if key in keys}
