"""What a SAM conversion could not carry over, listed by resource and property.

Every mapper of this package records its findings in one ``Report``; ``kubelambda sam convert``
prints it and picks its exit code from it, and local mode prints it as warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    """How much a finding matters, worst first."""

    # The template asks for something the manifests do not do, or do differently.
    NOT_MAPPED = "not mapped"
    # It has no meaning on kubelambda (IAM, tags, build settings): leaving it out changes nothing.
    IGNORED = "ignored"
    # How something was mapped, and what to set up for it (a stream, a Secret).
    NOTE = "note"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One thing to know about ``resource`` (a logical id, or a template section) at
    ``prop`` (a property path such as ``Events.Orders.Properties.Path``; "" for all of it)."""

    kind: Kind
    resource: str
    prop: str
    message: str

    def __str__(self) -> str:
        where = f"{self.resource}.{self.prop}" if self.prop else self.resource
        return f"{self.kind.value}: {where}: {self.message}"


@dataclass
class Report:
    """The findings of one conversion, in the order they were made."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, kind: Kind, resource: str, prop: str, message: str) -> None:
        finding = Finding(kind=kind, resource=resource, prop=prop, message=message)
        if finding not in self.findings:
            self.findings.append(finding)

    def not_mapped(self, resource: str, prop: str, message: str) -> None:
        self.add(Kind.NOT_MAPPED, resource, prop, message)

    def ignored(self, resource: str, prop: str, message: str) -> None:
        self.add(Kind.IGNORED, resource, prop, message)

    def note(self, resource: str, prop: str, message: str) -> None:
        self.add(Kind.NOTE, resource, prop, message)

    def of_kind(self, kind: Kind) -> list[Finding]:
        return [finding for finding in self.findings if finding.kind is kind]
