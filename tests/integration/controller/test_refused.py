"""A table of bad manifests (tests/unit/api/refused.yaml, shared with the models' tests): the real
API server refuses each at `kubectl apply`, with a message that names the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.apiserver import ApiServer

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "unit" / "api" / "refused.yaml").read_text()
)


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
