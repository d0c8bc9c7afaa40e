"""What every mapper of one conversion shares: the report, the template's folder, how code is
carried, the Kubernetes names given to the template's functions, and readers of resolved
property values that report what they cannot use.

convert.py makes one Scope per template; functions.py, http.py and events.py read through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubelambda.api.meta import API_VERSION
from kubelambda.api.sam.code import CodeMode
from kubelambda.api.sam.intrinsics import Resolver
from kubelambda.api.sam.report import Report
from kubelambda.api.sam.values import find_unresolved


@dataclass(kw_only=True)
class Scope:
    """One conversion's shared state. ``functions`` maps a function's logical id to its
    Function's name, ``lambda_name_of`` to its Lambda name (FunctionName, else the logical id),
    and ``lambda_names`` a Lambda name to the Function's name."""

    report: Report
    resolver: Resolver
    template_dir: Path
    code_mode: CodeMode
    namespace: str | None = None
    functions: dict[str, str] = field(default_factory=dict)
    lambda_name_of: dict[str, str] = field(default_factory=dict)
    lambda_names: dict[str, str] = field(default_factory=dict)
    # Logical ids of resources the events stand for (a bucket, a queue): not reported again.
    used: set[str] = field(default_factory=set)

    def metadata(self, name: str) -> dict[str, object]:
        meta: dict[str, object] = {"name": name}
        if self.namespace:
            meta["namespace"] = self.namespace
        return meta

    def manifest(self, kind: str, name: str, spec: dict[str, object]) -> dict[str, object]:
        return {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": self.metadata(name),
            "spec": spec,
        }

    def plain(self, resource: str, prop: str, value: object) -> bool:
        """Whether ``value`` is fully resolved; if not, it is reported as not mapped."""
        unresolved = find_unresolved(value)
        if unresolved is None:
            return True
        self.report.not_mapped(resource, prop, f"cannot be resolved: {unresolved.reason}")
        return False

    def text(self, resource: str, prop: str, value: object) -> str | None:
        """A string property (numbers are written as CloudFormation writes them)."""
        if value is None or not self.plain(resource, prop, value):
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        self.report.not_mapped(resource, prop, f"must be a string, not {value!r}")
        return None

    def integer(
        self, resource: str, prop: str, value: object, *, low: int, high: int
    ) -> int | None:
        """An integer property within [low, high] (Parameters give numbers as strings)."""
        if value is None or not self.plain(resource, prop, value):
            return None
        number = _as_integer(value)
        if number is None:
            self.report.not_mapped(resource, prop, f"must be an integer, not {value!r}")
            return None
        if not low <= number <= high:
            self.report.not_mapped(
                resource, prop, f"{number} is outside what kubelambda takes ({low} to {high})"
            )
            return None
        return number

    def flag(self, resource: str, prop: str, value: object, *, default: bool) -> bool:
        """A boolean property (CloudFormation also takes "true" and "false")."""
        if value is None or not self.plain(resource, prop, value):
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.report.not_mapped(resource, prop, f"must be true or false, not {value!r}")
        return default


def _as_integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def mapping(value: object) -> Mapping[str, object]:
    """``value`` if it is a mapping, else an empty one (the caller reports what it expected)."""
    return value if isinstance(value, Mapping) else {}
