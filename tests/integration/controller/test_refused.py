"""A table of bad manifests (tests/unit/api/refused.yaml, shared with the models' tests): the real
API server refuses each at `kubectl apply`, with a message that names the field. The queue and
kafka Triggers of tests/unit/api/valid.yaml, which have rules of their own, are accepted and
defaulted as the models default them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.apiserver import ApiServer
from kubelambda.api import parse_trigger

API_TESTS = Path(__file__).resolve().parents[2] / "unit" / "api"
CASES: list[dict[str, Any]] = yaml.safe_load((API_TESTS / "refused.yaml").read_text())
PULLED = [
    doc
    for doc in yaml.safe_load_all((API_TESTS / "valid.yaml").read_text())
    if doc["kind"] == "Trigger" and ({"queue", "kafka"} & doc["spec"].keys())
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[case["case"] for case in CASES])
def test_refused_at_apply_naming_the_field(
    kube_api: ApiServer, crds: None, case: dict[str, Any]
) -> None:
    refused = kube_api.kubectl(
        "apply",
        "-n",
        "default",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps(case["manifest"]),
        check=False,
    )
    assert refused.returncode != 0, f"accepted: {refused.stdout}"
    assert case["field"] in refused.stderr, refused.stderr
    assert case.get("message", "") in refused.stderr.replace("\n", " "), refused.stderr


def test_the_valid_pulled_sources_are_there() -> None:
    assert len(PULLED) >= 4


@pytest.mark.parametrize("manifest", PULLED, ids=[doc["metadata"]["name"] for doc in PULLED])
def test_a_valid_queue_or_kafka_trigger_is_accepted_and_defaulted_as_the_models_do(
    kube_api: ApiServer, crds: None, manifest: dict[str, Any]
) -> None:
    manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": "default"}}
    applied = kube_api.kubectl(
        "apply",
        "-n",
        "default",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
    )
    stored, sent = parse_trigger(json.loads(applied.stdout)), parse_trigger(manifest)
    assert (stored.source, stored.delivery) == (sent.source, sent.delivery)
