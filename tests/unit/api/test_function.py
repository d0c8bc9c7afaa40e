"""parse_function: valid examples become fully defaulted Functions; all problems are reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelambda.api import (
    ConfigMapCode,
    DeadLetter,
    Delivery,
    EnvVar,
    FieldRef,
    FolderCode,
    Function,
    InlineCode,
    KeyRef,
    ResourceFieldRef,
    Scaling,
    SpecError,
    parse_function,
)

HERE = Path(__file__).parent
VALID = {
    doc["metadata"]["name"]: doc
    for doc in yaml.safe_load_all((HERE / "valid.yaml").read_text())
    if doc["kind"] == "Function"
}
DEFAULT_SCALING = Scaling(
    min_replicas=0, max_replicas=10, target_concurrency=1, scale_to_zero_after_seconds=60
)
HELLO_SOURCE = 'def handler(event, context):\n    return {"hello": event.get("name", "world")}\n'

EXPECTED = {
    "hello": Function(
        name="hello",
        namespace="default",
        runtime="python3.12",
        image=None,
        handler="app.handler",
        code=InlineCode(files={"app.py": HELLO_SOURCE}),
        env=(),
        memory_mb=128,
        timeout_seconds=3,
        concurrency=1,
        scaling=DEFAULT_SCALING,
        delivery=Delivery(retries=2, backoff_seconds=60, dead_letter=None),
    ),
    "everything": Function(
        name="everything",
        namespace="team-a",
        runtime="python3.13",
        image=None,
        handler="pkg.mod.handler",
        code=InlineCode(
            files={
                "pkg/__init__.py": "",
                "pkg/mod.py": "def handler(event, context):\n    return event\n",
            }
        ),
        env=(
            EnvVar(name="GREETING", value="hi"),
            EnvVar(name="EMPTY"),
            EnvVar(name="TOKEN", secret_key_ref=KeyRef("api-token", "token", optional=True)),
            EnvVar(name="COLOUR", config_map_key_ref=KeyRef("settings", "colour")),
            EnvVar(name="POD_NAMESPACE", field_ref=FieldRef("metadata.namespace")),
            EnvVar(
                name="MEMORY_LIMIT",
                resource_field_ref=ResourceFieldRef("limits.memory", divisor="1Mi"),
            ),
        ),
        memory_mb=512,
        timeout_seconds=30,
        concurrency=4,
        scaling=Scaling(
            min_replicas=1, max_replicas=20, target_concurrency=2, scale_to_zero_after_seconds=0
        ),
        delivery=Delivery(
            retries=0, backoff_seconds=5, dead_letter=DeadLetter(function="failures")
        ),
    ),
    "from-configmap": Function(
        name="from-configmap",
        namespace="default",
        runtime="python3.11",
        image=None,
        handler="main.handle",
        code=ConfigMapCode("my-code"),
        env=(),
        memory_mb=128,
        timeout_seconds=3,
        concurrency=8,
        # targetConcurrency unset: it follows concurrency.
        scaling=Scaling(
            min_replicas=0, max_replicas=3, target_concurrency=8, scale_to_zero_after_seconds=60
        ),
        delivery=Delivery(),
    ),
    "custom-image": Function(
        name="custom-image",
        namespace="default",
        runtime=None,
        image="registry.example.com:5000/team/fn@sha256:0123abcd",
        handler=None,
        code=None,
        env=(),
        memory_mb=128,
        timeout_seconds=3,
        concurrency=1,
        scaling=DEFAULT_SCALING,
        delivery=Delivery(),
    ),
    "image-with-code": Function(
        name="image-with-code",
        namespace="default",
        runtime=None,
        image="localhost/kubelambda-runtime:0.1.0",
        handler="worker.run",
        code=InlineCode(
            files={"worker/__init__.py": "def run(event, context):\n    return None\n"}
        ),
        env=(),
        memory_mb=128,
        timeout_seconds=3,
        concurrency=1,
        scaling=DEFAULT_SCALING,
        delivery=Delivery(dead_letter=DeadLetter(url="https://hooks.example.com/failed?team=a")),
    ),
}


def test_every_valid_function_has_an_expectation() -> None:
    assert set(VALID) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_valid_function_parses_with_defaults(name: str) -> None:
    assert parse_function(VALID[name]) == EXPECTED[name]


def function(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": ""}}},
    }
    base.update(spec)
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "f"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def problems_of(obj: object, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_function(obj, **kwargs)
    return {p.path: p.message for p in caught.value.problems}


def test_every_problem_of_an_object_is_reported_at_once() -> None:
    obj = function(memoryMB=64, timeoutSeconds=0, runtime="python2.7", extra=True)
    assert set(problems_of(obj)) == {
        "spec.memoryMB",
        "spec.timeoutSeconds",
        "spec.runtime",
        "spec.extra",
    }


def test_spec_error_is_a_value_error_naming_path_and_problem() -> None:
    with pytest.raises(ValueError, match=r"spec\.memoryMB: must be at least 128, not 64"):
        parse_function(function(memoryMB=64))


def test_misspelt_field_gets_a_suggestion() -> None:
    assert problems_of(function(timeoutseconds=5)) == {
        "spec.timeoutseconds": "unknown field (did you mean timeoutSeconds?)"
    }


def test_null_means_unset_and_takes_the_default() -> None:
    parsed = parse_function(function(memoryMB=None, scaling={"maxReplicas": None}))
    assert parsed.memory_mb == 128
    assert parsed.scaling.max_replicas == 10


def test_kopf_body_with_status_and_server_metadata_parses() -> None:
    body = function(memoryMB=256)
    body["metadata"].update(
        namespace="team-b", uid="0a1b", resourceVersion="42", generation=3, labels={"a": "b"}
    )
    body["status"] = {"replicas": 0, "conditions": []}
    parsed = parse_function(body)
    assert (parsed.namespace, parsed.memory_mb) == ("team-b", 256)


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ([], ""),
        ({**function(), "spec": "x"}, "spec"),
        ({**function(), "kind": "Trigger"}, "kind"),
        ({**function(), "apiVersion": "kubelambda.dev/v1"}, "apiVersion"),
        ({**function(), "metadata": {}}, "metadata.name"),
        ({**function(), "metadata": {"name": "f", "namespace": "Bad_NS"}}, "metadata.namespace"),
        (function(env={"A": "1"}), "spec.env"),
        (function(memoryMB=True), "spec.memoryMB"),
    ],
    ids=[
        "not-a-mapping",
        "spec-string",
        "kind",
        "version",
        "no-name",
        "namespace",
        "env-map",
        "bool",
    ],
)
def test_malformed_objects_are_refused(obj: object, path: str) -> None:
    assert path in problems_of(obj)


def test_code_folder_resolves_against_the_manifest_folder(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "app.py").write_text("def handler(event, context): return 1\n")
    parsed = parse_function(function(code={"path": "./hello"}), manifest_dir=tmp_path)
    assert parsed.code == FolderCode(tmp_path / "hello")
    assert isinstance(parsed.code, FolderCode) and parsed.code.path.is_absolute()


def test_code_folder_must_exist(tmp_path: Path) -> None:
    problems = problems_of(function(code={"path": "missing"}), manifest_dir=tmp_path)
    assert "must name a folder" in problems["spec.code.path"]


def test_code_folder_is_relative_to_the_manifest_never_absolute(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "app.py").write_text("def handler(event, context): return 1\n")
    absolute = str(tmp_path / "hello")
    problems = problems_of(function(code={"path": absolute}), manifest_dir=tmp_path)
    assert (
        problems["spec.code.path"] == f"must be relative to the manifest's folder, not {absolute!r}"
    )


def test_code_folder_must_hold_the_handler_module(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    problems = problems_of(function(code={"path": "hello"}), manifest_dir=tmp_path)
    assert problems["spec.handler"].startswith("must name a module found in spec.code.path")


def test_code_folder_is_refused_without_a_manifest_folder() -> None:
    problems = problems_of(function(code={"path": "hello"}))
    assert "kubelambda local" in problems["spec.code.path"]


def test_handler_module_may_be_a_package() -> None:
    files = {"pkg/sub/__init__.py": "", "pkg/__init__.py": ""}
    parsed = parse_function(function(handler="pkg.sub.run", code={"inline": {"files": files}}))
    assert parsed.handler == "pkg.sub.run"


def test_inline_files_are_read_only() -> None:
    parsed = parse_function(function())
    assert isinstance(parsed.code, InlineCode)
    with pytest.raises(TypeError):
        parsed.code.files["app.py"] = "changed"  # type: ignore[index]


def test_the_invoke_api_is_closed_unless_the_function_opts_in() -> None:
    assert parse_function(function()).anonymous_invoke is False
    assert parse_function(function(invoke={"anonymous": True})).anonymous_invoke is True
    problems = problems_of(function(invoke={"anonymous": "yes"}))
    assert "spec.invoke.anonymous" in problems
