"""A Function's environment variables: Kubernetes EnvVars, parsed, checked, and written back.

function.py parses ``spec.env`` with ``read_env``; the controller puts ``to_manifest()`` into
the pod spec, and local mode resolves plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kubelambda.api.reader import Node, Reader

# The runtime sets these from the spec (docs/contracts.md), so a user's value would be lost.
RESERVED_NAMES: Final = frozenset(
    {
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
    }
)
RESERVED_PREFIX: Final = "KUBELAMBDA_"
_SOURCES: Final = ("configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef")


@dataclass(frozen=True)
class KeyRef:
    """A key of a ConfigMap or Secret in the function's namespace."""

    name: str
    key: str
    optional: bool | None = None

    def to_manifest(self) -> dict[str, object]:
        ref: dict[str, object] = {"name": self.name, "key": self.key}
        if self.optional is not None:
            ref["optional"] = self.optional
        return ref


@dataclass(frozen=True)
class FieldRef:
    """A field of the pod, such as ``metadata.namespace``."""

    field_path: str
    api_version: str | None = None

    def to_manifest(self) -> dict[str, object]:
        ref: dict[str, object] = {"fieldPath": self.field_path}
        if self.api_version is not None:
            ref["apiVersion"] = self.api_version
        return ref


@dataclass(frozen=True)
class ResourceFieldRef:
    """A resource limit or request of the container, such as ``limits.memory``."""

    resource: str
    container_name: str | None = None
    divisor: int | str | None = None

    def to_manifest(self) -> dict[str, object]:
        ref: dict[str, object] = {"resource": self.resource}
        if self.container_name is not None:
            ref["containerName"] = self.container_name
        if self.divisor is not None:
            ref["divisor"] = self.divisor
        return ref


@dataclass(frozen=True, kw_only=True)
class EnvVar:
    """One variable: a literal ``value``, or exactly one ``valueFrom`` source, or neither ("")."""

    name: str
    value: str | None = None
    config_map_key_ref: KeyRef | None = None
    secret_key_ref: KeyRef | None = None
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None

    def to_manifest(self) -> dict[str, object]:
        """The Kubernetes EnvVar, in the shape a container spec takes."""
        var: dict[str, object] = {"name": self.name}
        if self.value is not None:
            var["value"] = self.value
        source: dict[str, object] = {}
        if self.config_map_key_ref is not None:
            source["configMapKeyRef"] = self.config_map_key_ref.to_manifest()
        if self.secret_key_ref is not None:
            source["secretKeyRef"] = self.secret_key_ref.to_manifest()
        if self.field_ref is not None:
            source["fieldRef"] = self.field_ref.to_manifest()
        if self.resource_field_ref is not None:
            source["resourceFieldRef"] = self.resource_field_ref.to_manifest()
        if source:
            var["valueFrom"] = source
        return var


def read_env(reader: Reader, spec: Node) -> tuple[EnvVar, ...]:
    return tuple(_read_var(reader, item) for item in reader.items(spec.child("env")))


def _read_var(reader: Reader, item: Node) -> EnvVar:
    node = reader.obj(item)
    if node is None:
        return EnvVar(name="")
    name = reader.text(node.child("name"))
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
        reader.report(
            f"{node.path}.name",
            "must not be one the runtime sets from the spec "
            f"(_HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_*, KUBELAMBDA_*), not {name!r}",
        )
    value = reader.optional_text(node.child("value"))
    if node.child("value").present and node.child("valueFrom").present:
        reader.report(node.path, "may set value or valueFrom, not both")
    source = reader.obj(node.child("valueFrom"))
    if source is None:
        return EnvVar(name=name, value=value)
    if sum(source.child(kind).present for kind in _SOURCES) != 1:
        reader.report(source.path, "must set exactly one of " + ", ".join(_SOURCES))
    field_ref = None
    if (ref := reader.obj(source.child("fieldRef"))) is not None:
        field_ref = FieldRef(
            field_path=reader.text(ref.child("fieldPath")),
            api_version=reader.optional_text(ref.child("apiVersion")),
        )
    resource_ref = None
    if (ref := reader.obj(source.child("resourceFieldRef"))) is not None:
        resource_ref = ResourceFieldRef(
            resource=reader.text(ref.child("resource")),
            container_name=reader.optional_text(ref.child("containerName")),
            divisor=reader.int_or_string(ref.child("divisor")),
        )
    return EnvVar(
        name=name,
        value=value,
        config_map_key_ref=_read_key_ref(reader, source.child("configMapKeyRef")),
        secret_key_ref=_read_key_ref(reader, source.child("secretKeyRef")),
        field_ref=field_ref,
        resource_field_ref=resource_ref,
    )


def _read_key_ref(reader: Reader, at: Node) -> KeyRef | None:
    node = reader.obj(at)
    if node is None:
        return None
    return KeyRef(
        name=reader.text(node.child("name")),
        key=reader.text(node.child("key")),
        optional=reader.optional_boolean(node.child("optional")),
    )
