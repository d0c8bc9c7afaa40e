"""`kubelambda new`'s folders: what each template writes is valid for the project's models, its
Python is clean, names are checked as a Function's are, and a folder is written whole or not at
all. (tests/integration/cli/test_new.py runs the generated tests.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from kubelambda.api import (
    BucketSource,
    ConfigMapCode,
    FolderCode,
    Function,
    HttpSource,
    ScheduleSource,
    SpecError,
    Trigger,
    load_manifests,
    parse_function,
)
from kubelambda.api.streams import QueueSource
from kubelambda.tools.scaffold import TEMPLATES, ScaffoldError, check_name, render, write

SOURCES = {
    "http": HttpSource,
    "bucket": BucketSource,
    "schedule": ScheduleSource,
    "queue": QueueSource,
}


def test_every_template_has_a_source_checked_here() -> None:
    assert set(SOURCES) == set(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_manifests_load_as_local_mode_loads_them(tmp_path: Path, template: str) -> None:
    folder = tmp_path / "my-func"
    write(folder, render("my-func", template))
    objects = load_manifests(folder)
    functions = [o for o in objects if isinstance(o, Function)]
    triggers = [o for o in objects if isinstance(o, Trigger)]
    assert [f.name for f in functions] == ["my-func"]
    assert functions[0].handler == "app.handler"
    assert functions[0].code == FolderCode(path=folder.resolve())
    assert len(triggers) == 1
    assert triggers[0].function == "my-func"
    assert isinstance(triggers[0].source, SOURCES[template])


def test_the_triggers_are_those_the_brief_names(tmp_path: Path) -> None:
    made = {t: load_manifests(_written(tmp_path, t)) for t in TEMPLATES}

    def source(template: str) -> object:
        return next(o for o in made[template] if isinstance(o, Trigger)).source

    http = source("http")
    assert isinstance(http, HttpSource)
    assert (http.path, http.methods) == ("/fn", ("GET", "POST"))
    bucket = source("bucket")
    assert isinstance(bucket, BucketSource)
    assert (bucket.bucket, bucket.events) == ("fn-uploads", ("s3:ObjectCreated:*",))
    schedule = source("schedule")
    assert isinstance(schedule, ScheduleSource)
    assert schedule.expression == "rate(5 minutes)"
    queue = source("queue")
    assert isinstance(queue, QueueSource)
    assert queue.stream == "FN"
    assert queue.batching.reports_batch_item_failures


def _written(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / template / "fn"
    write(folder, render("fn", template))
    return folder


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_readme_s_cluster_recipe_makes_a_function_a_cluster_takes(template: str) -> None:
    files = render("my-func", template)
    readme = files["README.md"]
    # The README's own sed expression, applied as sed applies it.
    found = re.search(r"sed 's\|(.+?)\|(.+?)\|' function\.yaml", readme)
    assert found is not None, readme
    manifest = re.sub(found[1], found[2], files["function.yaml"])
    function = next(
        doc for doc in yaml.safe_load_all(manifest) if doc and doc["kind"] == "Function"
    )
    parsed = parse_function(function)  # no manifest folder: as the cluster's operator reads it
    assert parsed.code == ConfigMapCode(name="my-func-code")
    assert "kubectl create configmap my-func-code --from-file=app.py" in readme


@pytest.mark.parametrize("template", TEMPLATES)
def test_no_placeholder_is_left_and_the_sample_event_is_json(template: str) -> None:
    files = render("my-func", template)
    for name, text in files.items():
        assert "{{" not in text, name
    json.loads(files["event.json"])
    assert set(files) == {"app.py", "function.yaml", "event.json", "test_my_func.py", "README.md"}


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_python_written_passes_ruff_with_its_defaults(tmp_path: Path, template: str) -> None:
    folder = _written(tmp_path, template)
    ruff = Path(sys.executable).with_name("ruff")
    checks = [
        [str(ruff), "check", "--isolated", "--select", "E,F,W,I,B,UP", str(folder)],
        [str(ruff), "format", "--isolated", "--check", str(folder)],
    ]
    for command in checks:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_each_function_s_test_module_has_a_name_of_its_own() -> None:
    assert "test_a_b.py" in render("a-b", "http")
    assert "test_c.py" in render("c", "http")


GOOD = ["a", "my-func", "f1", "a" * 63]
BAD = ["", "My-func", "1st", "-x", "x-", "under_score", "dot.ted", "a" * 64, "sp ace", "ü"]


@pytest.mark.parametrize("name", GOOD)
def test_a_dns_label_is_taken(name: str) -> None:
    check_name(name, "http")


@pytest.mark.parametrize("name", BAD)
def test_a_name_a_function_cannot_have_is_refused_as_the_model_refuses_it(name: str) -> None:
    with pytest.raises(ScaffoldError, match="cannot name a Function: use a DNS label"):
        check_name(name, "http")
    manifest = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {"runtime": "python3.12", "handler": "app.handler", "code": {"inline": {}}},
    }
    with pytest.raises(SpecError):
        parse_function(manifest)


def test_the_bucket_template_holds_the_name_to_what_its_bucket_name_allows(tmp_path: Path) -> None:
    longest = "b" * 55
    folder = tmp_path / "longest"
    write(folder, render(longest, "bucket"))
    assert len(load_manifests(folder)) == 2
    with pytest.raises(ScaffoldError, match="NAME at most 55"):
        render("b" * 56, "bucket")
    render("b" * 56, "http")


def test_an_unknown_template_is_refused_with_the_choices() -> None:
    with pytest.raises(ScaffoldError, match="no template 'grpc': choose one of http, bucket"):
        render("x", "grpc")


def test_an_existing_folder_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(ScaffoldError, match="already exists"):
        write(folder, render("taken", "http"))
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScaffoldError, match="already exists"):
        write(empty, render("empty", "http"))
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ScaffoldError, match="already exists"):
        write(a_file, render("file", "http"))


def test_a_failure_midway_leaves_nothing_behind(tmp_path: Path) -> None:
    files = {"app.py": "x = 1\n", "missing/sub.py": "y = 2\n"}  # no such subfolder
    with pytest.raises(FileNotFoundError):
        write(tmp_path / "fn", files)
    assert list(tmp_path.iterdir()) == []


def test_the_folder_gets_ordinary_permissions_and_its_parents_are_made(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "er" / "fn"
    write(folder, render("fn", "http"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(render("fn", "http"))
    assert folder.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert [p.name for p in folder.parent.iterdir()] == ["fn"]  # no staging folder left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_package_data_carries_every_template_into_the_wheel() -> None:
    repo = Path(__file__).resolve().parents[3]
    settings = tomllib.loads((repo / "pyproject.toml").read_text())
    globs = settings["tool"]["setuptools"]["package-data"]["kubelambda.tools"]
    package = repo / "operator" / "kubelambda" / "tools"
    shipped = {path for pattern in globs for path in package.glob(pattern)}
    templates = {path for path in (package / "templates").rglob("*") if path.is_file()}
    assert templates == shipped
    assert len(shipped) == 4 * 5 + 2  # four templates of five files, and two shared
