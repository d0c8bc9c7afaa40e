"""The labels and annotations that mark what belongs to a Function, spelled once, and the
announcement Secret's name and key.

The controller puts them on every object it builds; the gateway's and the autoscaler's
watches select a Function's Services, EndpointSlices and Deployments by them; the controller
makes the announcement Secret and the autoscaler's verification reads it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ANNOUNCE_KEY",
    "CODE_HASH_ANNOTATION",
    "COMPONENT_LABEL",
    "FUNCTION_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "announce_secret_name",
    "function_labels",
    "pod_selector",
]

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kubelambda"
FUNCTION_LABEL: Final = "kubelambda.dev/function"
# Which part of kubelambda an object is: on an object no Function owns, the only mark of ours.
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
CODE_HASH_ANNOTATION: Final = "kubelambda.dev/code-hash"
# The key of a Function's announcement Secret: "I am a pod of this Function" (docs/contracts.md
# "Announcements").
ANNOUNCE_KEY: Final = "key"


def announce_secret_name(function_name: str) -> str:
    """The Secret holding the key a Function's pods announce themselves with."""
    return f"{function_name}-announce"


def function_labels(function_name: str) -> dict[str, str]:
    """Labels of every object built for a Function, and of its pods."""
    return {
        "app.kubernetes.io/name": function_name,
        COMPONENT_LABEL: "function",
        MANAGED_BY_LABEL: MANAGED_BY,
        FUNCTION_LABEL: function_name,
    }


def pod_selector(function_name: str) -> dict[str, str]:
    """The labels that select a Function's pods. A Deployment's selector is immutable, so this
    stays minimal: one label, the Function's name."""
    return {FUNCTION_LABEL: function_name}
