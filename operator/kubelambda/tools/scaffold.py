"""Writes a new function's folder for ``kubelambda new``: its handler, its Function and Trigger
manifests, a sample event, a pytest module and a README, from the templates in templates/
(package data). `render` is pure; `write` puts a rendering on disk, whole or not at all.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Final

__all__ = ["TEMPLATES", "ScaffoldError", "check_name", "render", "test_file", "write"]

# template → what it makes, for --help
TEMPLATES: Final = {
    "http": "an HTTP API: an HTTP Trigger, API Gateway HTTP API events (payload 2.0)",
    "bucket": "a bucket-event handler: a bucket Trigger, S3 event notifications",
    "schedule": "a scheduled function: a schedule Trigger, rate(5 minutes)",
    "queue": "a queue consumer: a queue Trigger, SQS batches with ReportBatchItemFailures",
}
# A Function's name: a DNS-1035 label (kubelambda.api.patterns.DNS_LABEL, which imports the
# control-plane's YAML; `new` needs nothing beyond the standard library).
_DNS_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH: Final = 63
BUCKET_SUFFIX: Final = "-uploads"
MAX_BUCKET_LENGTH: Final = 63  # S3's bucket names
_PLACEHOLDER: Final = re.compile(r"\{\{(\w+)\}\}")


class ScaffoldError(ValueError):
    """The folder cannot be written as asked; the message says why and what to do."""


def check_name(name: str, template: str) -> None:
    """Raise ScaffoldError unless ``name`` can name a Function (and whatever the template
    names after it)."""
    if template not in TEMPLATES:
        raise ScaffoldError(f"no template {template!r}: choose one of {', '.join(TEMPLATES)}")
    if len(name) > MAX_NAME_LENGTH or not _DNS_LABEL.match(name):
        raise ScaffoldError(
            f"{name!r} cannot name a Function: use a DNS label of at most {MAX_NAME_LENGTH}"
            " characters, lowercase letters, digits and '-', starting with a letter and not"
            " ending with '-' (it names the function's Service on a cluster)"
        )
    longest = MAX_BUCKET_LENGTH - len(BUCKET_SUFFIX)
    if template == "bucket" and len(name) > longest:
        raise ScaffoldError(
            f"{name!r} is too long for the bucket template: its bucket is NAME{BUCKET_SUFFIX},"
            f" and S3 bucket names have at most {MAX_BUCKET_LENGTH} characters (NAME at most"
            f" {longest})"
        )


def test_file(name: str) -> str:
    """The generated test module's file name: of its own, so that pytest can collect the
    tests of several functions' folders in one run."""
    return f"test_{name.replace('-', '_')}.py"


def render(name: str, template: str) -> dict[str, str]:
    """The folder's files for function ``name`` from ``template``: relative path → text.
    ScaffoldError when the name or the template cannot be used."""
    check_name(name, template)
    values = {
        "name": name,
        "module": name.replace("-", "_"),
        "bucket": f"{name}{BUCKET_SUFFIX}",
        "stream": name.upper().replace("-", "_"),
    }
    values["cluster"] = _fill(_template("cluster.md.tmpl"), values)
    return {
        "app.py": _fill(_template(template, "app.py.tmpl"), values),
        "function.yaml": _fill(_template(template, "function.yaml.tmpl"), values),
        "event.json": _fill(_template(template, "event.json.tmpl"), values),
        test_file(name): _fill(
            _template("test_header.py.tmpl") + _template(template, "test.py.tmpl"), values
        ),
        "README.md": _fill(_template(template, "README.md.tmpl"), values),
    }


def _template(*parts: str) -> str:
    return resources.files(__package__).joinpath("templates", *parts).read_text(encoding="utf-8")


def _fill(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda found: values[found[1]], text)


def write(folder: Path, files: Mapping[str, str]) -> None:
    """Create ``folder`` holding ``files``. ScaffoldError if it exists; nothing is left behind
    when writing fails (OSError)."""
    if folder.exists() or folder.is_symlink():
        raise ScaffoldError(
            f"{folder} already exists: choose another NAME, or another folder with --output-dir"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written beside it, then renamed into place: a failure midway leaves no half a folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for relative, text in files.items():
            (staging / relative).write_text(text, encoding="utf-8")
        staging.chmod(0o777 & ~_umask())
        if folder.exists():  # made meanwhile: renaming onto an empty folder would replace it
            raise ScaffoldError(f"{folder} was created meanwhile by someone else")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    # mkdtemp makes a 0700 folder; the function's folder gets the permissions mkdir would give.
    mask = os.umask(0)
    os.umask(mask)
    return mask
