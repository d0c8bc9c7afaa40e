"""Manifests the tests apply: a Function with inline code, as a user would write it."""

from __future__ import annotations

from typing import Any


def inline_function(name: str, source: str, **spec: Any) -> dict[str, Any]:
    """A python3.12 Function whose app.py is ``source`` (handler app.handler); ``spec`` adds
    or overrides fields of its spec."""
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": source}}},
            **spec,
        },
    }
