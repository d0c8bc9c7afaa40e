"""The CRD files are sane, and the models' schema tables (kubelambda.api.schema) equal them.

The CRDs in crds/ are the source of truth: if a default or bound changes there, the models
must change with it, and these tests say where they disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelambda.api import API_GROUP
from kubelambda.api.env import RESERVED_NAMES, RESERVED_PREFIX
from kubelambda.api.field import Field
from kubelambda.api.patterns import (
    DNS_LABEL,
    FILE_NAME,
    FILE_NAME_MAX_LENGTH,
    QUEUE_BATCH_WITHOUT_WINDOW,
)
from kubelambda.api.schema import FUNCTION_FIELDS, TRIGGER_FIELDS
from kubelambda.api.trigger import RESERVED_PATH_PREFIXES, SOURCE_KINDS

CRDS = Path(__file__).parents[3] / "crds"
KEYWORDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "pattern": "pattern",
    "format": "format",
    "enum": "enum",
    "minItems": "minItems",
    "maxItems": "maxItems",
    "minProperties": "minProperties",
    "maxProperties": "maxProperties",
    "default": "default",
    "x-kubernetes-list-type": "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys": "x-kubernetes-list-map-keys",
}
# Sub-trees the models do not look into: the API server owns metadata, the operator status.
OPAQUE = ("metadata", "status")


def load(plural: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRDS / f"{plural}.{API_GROUP}.yaml").read_text())
    return crd


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below ``node`` with its path in schema.py's notation."""
    for name, child in node.get("properties", {}).items():
        child_path = f"{path}.{name}" if path else name
        yield child_path, child
        yield from walk(child, child_path)
    if "items" in node:
        yield f"{path}[]", node["items"]
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield f"{path}{{}}", node["additionalProperties"]
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def required_paths(root: dict[str, Any]) -> set[str]:
    found = {name for name in root.get("required", [])}
    for path, node in walk(root):
        found.update(f"{path}.{name}" for name in node.get("required", []))
    return found


def crd_fields(root: dict[str, Any]) -> dict[str, dict[str, object]]:
    required = required_paths(root)
    fields = {}
    for path, node in walk(root):
        if path.split(".")[0].split("[")[0] in OPAQUE and path not in OPAQUE:
            continue
        kind = "int-or-string" if node.get("x-kubernetes-int-or-string") else node["type"]
        keywords: dict[str, object] = {"type": kind, "required": path in required}
        keywords.update({ours: node[key] for key, ours in KEYWORDS.items() if key in node})
        fields[path] = keywords
    return fields


KINDS = [("functions", FUNCTION_FIELDS), ("triggers", TRIGGER_FIELDS)]


@pytest.mark.parametrize(("plural", "table"), KINDS, ids=["Function", "Trigger"])
def test_models_know_exactly_the_crd_fields(plural: str, table: dict[str, Field]) -> None:
    assert sorted(crd_fields(root_schema(load(plural)))) == sorted(table)


@pytest.mark.parametrize(("plural", "table"), KINDS, ids=["Function", "Trigger"])
def test_models_have_the_crd_defaults_and_bounds(plural: str, table: dict[str, Field]) -> None:
    from_crd = crd_fields(root_schema(load(plural)))
    from_models = {path: field.crd_keywords() for path, field in table.items()}
    mismatched = {
        f"{path} {key}": (crd.get(key), from_models[path].get(key))
        for path, crd in from_crd.items()
        if path in from_models
        for key in crd.keys() | from_models[path].keys()
        if crd.get(key) != from_models[path].get(key)
    }
    assert mismatched == {}, "(CRD, models) differ"


def test_constants_inside_cel_rules_match_the_models() -> None:
    function = root_schema(load("functions"))
    spec = function["properties"]["spec"]
    files = spec["properties"]["code"]["properties"]["inline"]["properties"]["files"]
    files_rule = files["x-kubernetes-validations"][0]["rule"]
    assert f"'{FILE_NAME}'" in files_rule
    assert f"size(name) <= {FILE_NAME_MAX_LENGTH}" in files_rule
    env_rules = " ".join(
        r["rule"] for r in spec["properties"]["env"]["items"]["x-kubernetes-validations"]
    )
    listed = re.search(r"self\.name in \[([^\]]*)\]", env_rules)
    assert listed is not None
    assert set(re.findall(r"'([A-Z_]+)'", listed.group(1))) == RESERVED_NAMES
    assert f"startsWith('{RESERVED_PREFIX}')" in env_rules
    name_rule = function["x-kubernetes-validations"][0]["rule"]
    assert f"matches('{DNS_LABEL}')" in name_rule and "<= 63" in name_rule
    http = root_schema(load("triggers"))["properties"]["spec"]["properties"]["http"]
    path_rule = http["properties"]["path"]["x-kubernetes-validations"][0]["rule"]
    assert re.findall(r"startsWith\('([^']+)'\)", path_rule) == list(RESERVED_PATH_PREFIXES)


def test_trigger_source_rules_match_the_models() -> None:
    spec = root_schema(load("triggers"))["properties"]["spec"]
    one_source = spec["x-kubernetes-validations"][0]["rule"]
    assert tuple(re.findall(r"has\(self\.(\w+)\) \? 1", one_source)) == SOURCE_KINDS
    assert set(SOURCE_KINDS) <= set(spec["properties"])
    queue_rules = [r["rule"] for r in spec["properties"]["queue"]["x-kubernetes-validations"]]
    assert f"self.batchSize <= {QUEUE_BATCH_WITHOUT_WINDOW} ||" in queue_rules[0]


@pytest.mark.parametrize(
    ("plural", "kind", "short", "columns"),
    [
        (
            "functions",
            "Function",
            "fn",
            ["Ready", "Replicas", "URL", "Age", "Runtime", "Handler", "Scaling", "Cold start"],
        ),
        (
            "triggers",
            "Trigger",
            "trig",
            ["Function", "Source", "Ready", "Next", "Age", "URL", "Lag"],
        ),
    ],
)
def test_crd_names_scope_version_and_columns(
    plural: str, kind: str, short: str, columns: list[str]
) -> None:
    crd = load(plural)
    assert (crd["apiVersion"], crd["kind"]) == (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
    )
    assert crd["metadata"]["name"] == f"{plural}.{API_GROUP}"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == (API_GROUP, "Namespaced")
    assert spec["names"]["kind"] == kind and spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["kubelambda"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}  # replicas live on the Deployment: no scale
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
    ready = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Ready")
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def all_nodes() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for plural in ("functions", "triggers"):
        root = root_schema(load(plural))
        yield plural, "", root, root
        for path, node in walk(root):
            yield plural, path, node, root


NODES = list(all_nodes())
NODE_IDS = [f"{plural}:{path or '<root>'}" for plural, path, _, _ in NODES]


@pytest.mark.parametrize(("plural", "path", "node", "root"), NODES, ids=NODE_IDS)
def test_schema_node_is_structural_and_bounded(
    plural: str, path: str, node: dict[str, Any], root: dict[str, Any]
) -> None:
    assert "type" in node or node.get("x-kubernetes-int-or-string") is True
    assert "x-kubernetes-preserve-unknown-fields" not in node
    kind = node.get("type")
    if kind == "object" and path != "metadata":
        assert "properties" in node or "additionalProperties" in node
    if kind == "array":
        assert "items" in node
    assert set(node.get("required", [])) <= set(node.get("properties", {}))
    for key in node.get("x-kubernetes-list-map-keys", []):
        assert key in node["items"].get("required", [])
    if "pattern" in node:
        assert node["pattern"].startswith("^") and node["pattern"].endswith("$")
    if path.startswith("spec"):
        # Bounds keep objects small and CEL rules within the API server's cost budget.
        if kind == "string":
            assert "maxLength" in node or "enum" in node
        if kind == "array":
            assert "maxItems" in node
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node


@pytest.mark.parametrize(("plural", "path", "node", "root"), NODES, ids=NODE_IDS)
def test_defaults_obey_their_own_bounds(
    plural: str, path: str, node: dict[str, Any], root: dict[str, Any]
) -> None:
    if "default" not in node:
        return
    default = node["default"]
    if "minimum" in node:
        assert node["minimum"] <= default <= node["maximum"]
    if "enum" in node:
        assert default in node["enum"]
    if node.get("type") == "array":
        assert node.get("minItems", 0) <= len(default) <= node["maxItems"]
        for item in default:
            assert item in node["items"].get("enum", [item])
            assert re.fullmatch(node["items"].get("pattern", ".*"), item)


def resolve(node: dict[str, Any], chain: list[str]) -> bool:
    for name in chain:
        if node.get("type") != "object" or name not in node.get("properties", {}):
            return False
        node = node["properties"][name]
    return True


@pytest.mark.parametrize(("plural", "path", "node", "root"), NODES, ids=NODE_IDS)
def test_cel_rules_name_real_fields_and_say_which(
    plural: str, path: str, node: dict[str, Any], root: dict[str, Any]
) -> None:
    for validation in node.get("x-kubernetes-validations", []):
        message = validation["message"]
        assert message.startswith(("spec", "metadata.")), message
        for chain in re.findall(r"self((?:\.\w+)+)(?![\w(])", validation["rule"]):
            names = chain.strip(".").split(".")
            if path == "" and names[:2] == ["metadata", "name"]:
                continue  # the API server gives CEL metadata.name at the root
            assert resolve(node, names), f"{validation['rule']}: self{chain}"
        if "fieldPath" in validation:
            assert resolve(node, validation["fieldPath"].strip(".").split("."))
