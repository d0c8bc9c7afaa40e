"""load_manifests: folders and files of multi-document YAML; errors name file, document, field."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from kubelambda.api import (
    FolderCode,
    Function,
    HttpSource,
    ManifestError,
    ManifestProblem,
    Trigger,
    load_manifests,
)

HERE = Path(__file__).parent

FUNCTION = """\
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: NAME}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: ""}}}
"""
TRIGGER = """\
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: NAME}
spec: {function: hello, http: {path: /hello}}
"""
SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: token}
stringData: {token: abc}
"""


def write(folder: Path, name: str, *documents: str) -> Path:
    path = folder / name
    path.write_text("---\n".join(documents))
    return path


def problems(path: Path) -> list[ManifestProblem]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(path)
    return list(caught.value.problems)


def test_the_valid_examples_load() -> None:
    loaded = load_manifests(HERE / "valid.yaml")
    assert [type(obj).__name__ for obj in loaded] == ["Function"] * 5 + ["Trigger"] * 9


def test_folder_files_in_name_order_other_groups_and_empty_documents_skipped(
    tmp_path: Path,
) -> None:
    write(tmp_path, "b.yml", TRIGGER.replace("NAME", "t1"))
    write(tmp_path, "a.yaml", FUNCTION.replace("NAME", "hello"), SECRET, "# only a comment\n")
    write(tmp_path, "notes.txt", "not: yaml: at all: [")
    loaded = load_manifests(tmp_path)
    assert [(type(obj).__name__, obj.name) for obj in loaded] == [
        ("Function", "hello"),
        ("Trigger", "t1"),
    ]


def test_subfolders_hold_code_and_are_not_read(tmp_path: Path) -> None:
    write(tmp_path, "fn.yaml", FUNCTION.replace("NAME", "hello"))
    (tmp_path / "hello").mkdir()
    write(
        tmp_path / "hello", "config.yaml", "kind: Function\napiVersion: kubelambda.dev/v1alpha1\n"
    )
    assert [obj.name for obj in load_manifests(tmp_path)] == ["hello"]


def test_code_path_is_relative_to_the_manifest_file(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "src" / "hello").mkdir(parents=True)
    (tmp_path / "src" / "hello" / "app.py").write_text("def handler(e, c): return 1\n")
    manifest = FUNCTION.replace("NAME", "hello").replace(
        'code: {inline: {files: {app.py: ""}}}', "code: {path: ../src/hello}"
    )
    [function] = load_manifests(write(tmp_path / "deploy", "fn.yaml", manifest))
    assert isinstance(function, Function)
    assert function.code == FolderCode((tmp_path / "src" / "hello").resolve())


def test_one_file_with_a_function_and_its_trigger(tmp_path: Path) -> None:
    path = write(
        tmp_path, "app.yaml", FUNCTION.replace("NAME", "hello"), TRIGGER.replace("NAME", "t")
    )
    function, trigger = load_manifests(path)
    assert isinstance(trigger, Trigger) and isinstance(trigger.source, HttpSource)
    assert trigger.function == function.name


def test_every_problem_names_file_document_and_field(tmp_path: Path) -> None:
    bad_function = FUNCTION.replace("NAME", "f").replace("runtime: python3.12", "runtime: java")
    a = write(tmp_path, "a.yaml", FUNCTION.replace("NAME", "ok"), bad_function + "  memoryMB: 1\n")
    b = write(
        tmp_path,
        "b.yaml",
        SECRET,
        "apiVersion: kubelambda.dev/v1alpha1\nkind: Widget\nmetadata: {name: w}\n",
    )
    found = problems(tmp_path)
    assert [(p.file, p.document, p.obj, p.path) for p in found] == [
        (a, 2, "Function/f", "spec.runtime"),
        (a, 2, "Function/f", "spec.memoryMB"),
        (b, 2, "Widget/w", "kind"),
    ]
    assert (
        str(found[1]) == f"{a}, document 2 (Function/f): spec.memoryMB: must be at least 128, not 1"
    )


def test_error_message_lists_all_problems(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", "apiVersion: kubelambda.dev/v2\nkind: Function\nmetadata: {name: f}\n"
    )
    with pytest.raises(ManifestError, match=r"1 problem in manifests:\n  .*a\.yaml, document 1"):
        load_manifests(tmp_path)


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("kind: [unclosed\n", "", "is not valid YAML at line 2"),
        (FUNCTION.replace("NAME", "f") + "spec: {}\n", "", "found duplicate key 'spec'"),
        ("- a list\n- of things\n", "", "must be a Kubernetes object"),
        ("metadata: {name: f}\n", "", "apiVersion and kind are required"),
        (FUNCTION.replace("NAME", "f").replace("v1alpha1", "v1"), "apiVersion", "v1alpha1"),
        (FUNCTION.replace("Function", "Functions"), "kind", "must be Function or Trigger"),
    ],
    ids=["syntax", "duplicate-key", "list", "no-kind", "version", "kind"],
)
def test_malformed_documents(tmp_path: Path, text: str, path: str, message: str) -> None:
    [problem] = problems(write(tmp_path, "m.yaml", text))
    assert problem.path == path
    assert message in problem.message


def test_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    text = dedent(
        """\
        apiVersion: kubelambda.dev/v1alpha1
        kind: Function
        metadata:
          name: f
         spec: {}
        """
    )
    [problem] = problems(write(tmp_path, "m.yaml", text))
    assert problem.document is None
    assert "line 5" in problem.message


def test_the_same_object_twice_is_refused(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", FUNCTION.replace("NAME", "hello"))
    write(tmp_path, "b.yaml", FUNCTION.replace("NAME", "hello"))
    [problem] = problems(tmp_path)
    assert problem.path == "metadata.name"
    assert f"already defined in {first}, document 1" in problem.message


def test_a_function_and_a_trigger_may_share_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", FUNCTION.replace("NAME", "x"), TRIGGER.replace("NAME", "x"))
    assert len(load_manifests(path)) == 2


def test_missing_path(tmp_path: Path) -> None:
    [problem] = problems(tmp_path / "nowhere")
    assert problem.message == "no such file or folder"


def test_empty_folder_has_no_objects(tmp_path: Path) -> None:
    assert load_manifests(tmp_path) == []
