"""The parts of an object outside its spec that the models read: apiVersion, kind, name, namespace.

function.py and trigger.py call ``read_meta`` first; names are checked as the API server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kubelambda.api.patterns import DNS_SUBDOMAIN
from kubelambda.api.reader import Node, Reader, describe, matches

API_GROUP: Final = "kubelambda.dev"
API_VERSION: Final = f"{API_GROUP}/v1alpha1"
DEFAULT_NAMESPACE: Final = "default"
_NAMESPACE: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def read_meta(reader: Reader, root: Node, *, kind: str) -> tuple[str, str]:
    """Check apiVersion and kind, and return (name, namespace); namespace defaults to "default".

    The name is "" when it is missing or invalid (and reported).
    """
    api_version = reader.optional_text(root.child("apiVersion"))
    if api_version is None:
        reader.report("apiVersion", f"is required ({API_VERSION})")
    elif api_version != API_VERSION:
        reader.report("apiVersion", f"must be {API_VERSION}, not {api_version!r}")
    found_kind = reader.optional_text(root.child("kind"))
    if found_kind is None:
        reader.report("kind", f"is required ({kind})")
    elif found_kind != kind:
        reader.report("kind", f"must be {kind}, not {found_kind!r}")
    metadata = reader.obj(root.child("metadata"))
    if metadata is None:
        reader.report("metadata", "is required (it holds the name)")
        return "", DEFAULT_NAMESPACE
    fields = metadata.value if isinstance(metadata.value, Mapping) else {}
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        found = "is required" if name is None else f"must be a string, not {describe(name)}"
        reader.report("metadata.name", found)
        name = ""
    elif len(name) > 253 or not matches(DNS_SUBDOMAIN, name):
        reader.report(
            "metadata.name",
            f"must be a DNS subdomain (lowercase letters, digits, '-' and '.'), not {name!r}",
        )
        name = ""
    namespace = fields.get("namespace")
    if namespace is None:
        namespace = DEFAULT_NAMESPACE
    elif not (
        isinstance(namespace, str) and len(namespace) <= 63 and matches(_NAMESPACE, namespace)
    ):
        reader.report("metadata.namespace", f"must be a DNS label, not {describe(namespace)}")
        namespace = DEFAULT_NAMESPACE
    return name, namespace
