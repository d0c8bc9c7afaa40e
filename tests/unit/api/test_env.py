"""EnvVar.to_manifest gives back the Kubernetes EnvVar the user wrote."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubelambda.api import EnvVar, parse_function


def test_env_round_trips_to_the_kubernetes_shape() -> None:
    docs = yaml.safe_load_all((Path(__file__).parent / "valid.yaml").read_text())
    everything = next(doc for doc in docs if doc["metadata"]["name"] == "everything")
    parsed = parse_function(everything)
    assert [var.to_manifest() for var in parsed.env] == everything["spec"]["env"]


def test_plain_value() -> None:
    assert EnvVar(name="A", value="").to_manifest() == {"name": "A", "value": ""}
