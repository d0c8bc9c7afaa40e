"""Loads Functions and Triggers from manifest files, the ones a user would ``kubectl apply``,
and from AWS SAM templates (converted in memory by ``kubelambda.api.sam``).

Local mode calls ``load_manifests`` on a folder or a file. Objects of other API groups
(Secrets, ConfigMaps, …) are skipped; anything wrong is gathered into one ManifestError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

import yaml

from kubelambda.api.errors import ManifestError, ManifestProblem, SpecError
from kubelambda.api.function import Function, parse_function
from kubelambda.api.meta import API_GROUP, API_VERSION
from kubelambda.api.sam import (
    Kind,
    SamOptions,
    TemplateError,
    convert_template,
    is_sam_template,
    mentions_transform,
)
from kubelambda.api.sam.template import read_document
from kubelambda.api.strictyaml import StrictLoader
from kubelambda.api.trigger import Trigger, parse_trigger

SUFFIXES: Final = (".yaml", ".yml")
log = logging.getLogger(__name__)


def load_manifests(
    path: Path, *, on_warning: Callable[[str], None] | None = None
) -> list[Function | Trigger]:
    """Every Function and Trigger in ``path``: a file, or each *.yaml/*.yml file of a folder.

    A folder is read like ``kubectl apply -f DIR``: its own files in name order, not its
    subfolders (those hold code). ``spec.code.path`` is resolved against each file's folder.
    A file that is an AWS SAM template (``Transform: AWS::Serverless-2016-10-31``) is converted
    with its CodeUri folders as ``spec.code.path``; what does not map is passed to
    ``on_warning`` (by default, logged as warnings).
    Raises ManifestError naming the file, the document (from 1) and the field of every problem.
    """
    warn = on_warning if on_warning is not None else log.warning
    problems: list[ManifestProblem] = []
    objects: list[Function | Trigger] = []
    defined: dict[tuple[str, str, str], str] = {}
    for file in _files(path):
        text = _read(file, problems)
        if text is None:
            continue
        template = _sam_template(file, text)
        loaded: list[tuple[int | None, Function | Trigger | None]]
        if template is not None:
            loaded = _load_template(file, template, problems, warn)
        else:
            loaded = [
                (index, _load_document(file, index, document, problems))
                for index, document in _documents(file, text, problems)
            ]
        for index, obj in loaded:
            if obj is None:
                continue
            kind = "Function" if isinstance(obj, Function) else "Trigger"
            key = (kind, obj.namespace, obj.name)
            if key in defined:
                problems.append(
                    ManifestProblem(
                        file=file,
                        document=index,
                        obj=f"{kind}/{obj.name}",
                        path="metadata.name",
                        message=f"{kind} {obj.namespace}/{obj.name} is already defined"
                        f" in {defined[key]}",
                    )
                )
                continue
            defined[key] = f"{file}, document {index}" if index is not None else str(file)
            objects.append(obj)
    if problems:
        raise ManifestError(problems)
    return objects


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if path.is_file():
        return [path]
    problem = ManifestProblem(
        file=path, document=None, obj=None, path="", message="no such file or folder"
    )
    raise ManifestError([problem])


def _read(file: Path, problems: list[ManifestProblem]) -> str | None:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(
            ManifestProblem(
                file=file, document=None, obj=None, path="", message=f"cannot be read: {error}"
            )
        )
        return None


def _sam_template(file: Path, text: str) -> dict[str, object] | None:
    """The file's SAM template, or None when it is not one (manifests are read as manifests,
    and their own errors reported as such)."""
    if not mentions_transform(text):
        return None
    try:
        document = read_document(text, source=str(file))
    except TemplateError:
        return None
    return document if isinstance(document, dict) and is_sam_template(document) else None


def _load_template(
    file: Path,
    template: dict[str, object],
    problems: list[ManifestProblem],
    warn: Callable[[str], None],
) -> list[tuple[int | None, Function | Trigger | None]]:
    try:
        conversion = convert_template(
            template, template_dir=file.parent, options=SamOptions(code="path")
        )
    except TemplateError as error:
        problems.append(
            ManifestProblem(file=file, document=None, obj=None, path="", message=str(error))
        )
        return []
    findings = conversion.report.findings
    for finding in findings:
        if finding.kind is not Kind.IGNORED:
            warn(f"{file}: {finding}")
    ignored = len(conversion.report.of_kind(Kind.IGNORED))
    if ignored:
        warn(
            f"{file}: {ignored} properties ignored as meaningless here (IAM, tags, …):"
            f" `kubelambda sam convert {file}` lists them"
        )
    loaded: list[tuple[int | None, Function | Trigger | None]] = []
    for document in conversion.objects:
        loaded.append((None, _load_document(file, None, document, problems)))
    return loaded


def _documents(file: Path, text: str, problems: list[ManifestProblem]) -> list[tuple[int, object]]:
    def fail(message: str) -> list[tuple[int, object]]:
        problems.append(
            ManifestProblem(file=file, document=None, obj=None, path="", message=message)
        )
        return []

    try:
        documents = list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return fail(f"is not valid YAML{where}: {error.problem or error.context}")
    except yaml.YAMLError as error:
        return fail(f"is not valid YAML: {error}")
    # Empty documents (a stray '---', a file of comments) are not objects, as for kubectl.
    return [(index, doc) for index, doc in enumerate(documents, start=1) if doc is not None]


def _load_document(
    file: Path, index: int | None, document: object, problems: list[ManifestProblem]
) -> Function | Trigger | None:
    def fail(path: str, message: str, obj: str | None = None) -> None:
        problems.append(
            ManifestProblem(file=file, document=index, obj=obj, path=path, message=message)
        )

    if not isinstance(document, dict):
        fail("", "must be a Kubernetes object (a mapping with apiVersion and kind)")
        return None
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        fail("", "must be a Kubernetes object: apiVersion and kind are required strings")
        return None
    if api_version.partition("/")[0] != API_GROUP or "/" not in api_version:
        return None  # another API group: not ours to judge
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    label = f"{kind}/{name}" if isinstance(name, str) else kind
    if api_version != API_VERSION:
        fail("apiVersion", f"must be {API_VERSION}, not {api_version!r}", label)
        return None
    try:
        if kind == "Function":
            return parse_function(document, manifest_dir=file.parent)
        if kind == "Trigger":
            return parse_trigger(document)
    except SpecError as error:
        for problem in error.problems:
            fail(problem.path, problem.message, label)
        return None
    fail("kind", f"must be Function or Trigger (the kinds of {API_GROUP}), not {kind!r}", label)
    return None
