"""Hypothesis strategies for objects shaped like a CRD's openAPIV3Schema: mostly what the
schema describes (types, enums, patterns, bounds), and at every node, now and then, junk of
any JSON type, a missing required field or an unknown one."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

CRDS = Path(__file__).resolve().parents[2] / "crds"

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
JUNK: st.SearchStrategy[Any] = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@cache
def crd_schema(plural: str) -> dict[str, Any]:
    document = yaml.safe_load((CRDS / f"{plural}.kubelambda.dev.yaml").read_text())
    schema: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    top = schema.get("maxLength", 80)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    shapes: list[st.SearchStrategy[str]] = [st.text(max_size=min(top + 2, 90))]
    if "pattern" in schema:
        shapes.append(
            st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= top)
        )
    if schema.get("format") == "date-time":
        shapes.append(st.datetimes().map(lambda d: d.isoformat() + "Z"))
    return st.one_of(*reversed(shapes))


def _integer(schema: dict[str, Any]) -> st.SearchStrategy[int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    near = st.integers(
        min_value=None if low is None else low - 1, max_value=None if high is None else high + 1
    )
    return near | st.integers()


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if schema.get("x-kubernetes-int-or-string"):
        return st.integers(min_value=-5, max_value=10_000) | st.text(max_size=12)
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return JUNK
    kind = schema.get("type")
    if kind == "object":
        return _object(schema)
    if kind == "array":
        item = _value(schema.get("items", {}))
        return st.lists(item, max_size=min(schema.get("maxItems", 4), 4) + 1)
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return _integer(schema)
    if kind == "number":
        return st.floats(allow_nan=False) | st.integers()
    if kind == "boolean":
        return st.booleans()
    return JUNK


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    if not properties:
        extra = schema.get("additionalProperties")
        values = _value(extra) if isinstance(extra, dict) else JUNK
        return st.dictionaries(st.text(max_size=12), values, max_size=4)
    fields = {name: with_junk(sub) for name, sub in properties.items()}

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, strategy in fields.items():
            # Required fields are there nine times in ten; others about one time in three.
            keep = draw(st.integers(0, 9)) < (9 if name in required else 3)
            if keep:
                out[name] = draw(strategy)
        if draw(st.integers(0, 19)) == 0:
            out[draw(st.text(max_size=10))] = draw(JUNK)
        return out

    return build()


def with_junk(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value for `schema`, or (one time in twenty) junk of any JSON type."""
    return st.one_of(_value(schema), _value(schema), _value(schema), _value(schema), JUNK)


def manifests(plural: str, kind: str) -> st.SearchStrategy[Any]:
    """Objects as a client might send for the CRD `plural` (an apiVersion, kind and metadata
    that are right most of the time), and now and then no object at all."""
    schema = crd_schema(plural)
    names = st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True) | st.text(max_size=70)
    metadata = st.fixed_dictionaries(
        {"name": names, "namespace": st.sampled_from(["team-a", "default"]) | st.text(max_size=5)},
        optional={
            "annotations": st.dictionaries(
                st.sampled_from(["kubelambda.dev/function-name", "x"]) | st.text(max_size=20),
                st.text(max_size=70) | JUNK,
                max_size=2,
            ),
            "uid": st.text(max_size=8),
            "generation": st.integers(0, 5) | JUNK,
            "creationTimestamp": st.sampled_from(["2026-01-02T03:04:05Z", ""])
            | st.text(max_size=30),
        },
    )
    spec = with_junk(schema["properties"]["spec"])
    good = st.fixed_dictionaries(
        {
            "apiVersion": st.just("kubelambda.dev/v1alpha1") | st.text(max_size=25),
            "kind": st.just(kind) | st.text(max_size=10),
            "metadata": metadata | JUNK,
            "spec": spec,
        }
    )
    return st.one_of(good, good, good, good, good, good, good, good, good, JUNK)
