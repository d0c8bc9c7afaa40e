"""A function's code: SAM's CodeUri folder (or InlineCode) as the Function's ``spec.code``, and
a zip on S3 (CodeUri s3://…, a layer's ContentUri) as ``spec.code.s3`` / ``spec.layers[].s3``.

For a cluster the folder's files go inline (a ConfigMap holds about 1 MiB); for
``kubelambda local`` the folder is named as ``spec.code.path``. Called by functions.py and
layers.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from kubelambda.api.patterns import FILE_NAME, FILE_NAME_MAX_LENGTH
from kubelambda.api.sam.report import Report

CodeMode = Literal["inline", "path"]

# The controller refuses inline code above this (names and sources, as a ConfigMap counts them).
INLINE_LIMIT_BYTES: Final = 1024 * 1024
# The CRD's bound on spec.code.inline.files.
INLINE_MAX_FILES: Final = 100
# Client-side `kubectl apply` copies the object into an annotation of at most 256 KiB.
CLIENT_SIDE_APPLY_BYTES: Final = 200 * 1024
# What the runtime image has already (README: "boto3 included").
_PROVIDED: Final = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3"})
_REQUIREMENT_NAME: Final = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def folder_code(
    folder: Path, *, template_dir: Path, mode: CodeMode, resource: str, report: Report
) -> dict[str, object] | None:
    """``spec.code`` for the CodeUri folder ``folder``, or None (reported) when it cannot be."""
    if not folder.is_dir():
        report.not_mapped(resource, "CodeUri", f"{folder} is not a folder (zip files are not read)")
        return None
    _check_requirements(folder, resource, report, mode=mode)
    if mode == "path":
        return {"path": os.path.relpath(folder, template_dir)}
    files = _read_files(folder, resource, report)
    return {"inline": {"files": files}} if files is not None else None


# What a zip on S3 read without an endpoint and a Secret is, for the notes.
S3_NOTE: Final = (
    "read from AWS S3 in the operator's region, unsigned: for a private bucket add"
    " credentialsSecret (a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), for another"
    " S3 server endpoint"
)


def s3_location(value: object) -> dict[str, object] | None:
    """``{bucket, key, versionId?}`` of an S3 location as SAM writes it (s3://bucket/key, or
    {Bucket, Key, Version}) or CloudFormation does ({S3Bucket, S3Key, S3ObjectVersion}); None
    when ``value`` is neither (a folder, say)."""
    if isinstance(value, str):
        if not value.startswith("s3://"):
            return None
        bucket, _, key = value.removeprefix("s3://").partition("/")
        return {"bucket": bucket, "key": key} if bucket and key else None
    if not isinstance(value, Mapping):
        return None
    for bucket_key, key_key, version_key in (
        ("Bucket", "Key", "Version"),
        ("S3Bucket", "S3Key", "S3ObjectVersion"),
    ):
        name, path = value.get(bucket_key), value.get(key_key)
        if isinstance(name, str) and isinstance(path, str):
            location: dict[str, object] = {"bucket": name, "key": path}
            version = value.get(version_key)
            if isinstance(version, str | int) and str(version):
                location["versionId"] = str(version)
            return location
    return None


def inline_code(handler: str, source: str) -> dict[str, object]:
    """``spec.code`` for SAM's InlineCode: one file, the module the handler names."""
    module = handler.rsplit(".", 1)[0].replace(".", "/")
    return {"inline": {"files": {f"{module}.py": source}}}


def _read_files(folder: Path, resource: str, report: Report) -> dict[str, str] | None:
    files: dict[str, str] = {}
    size = 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        parts = relative.split("/")
        if any(p.startswith(".") or p == "__pycache__" for p in parts) or not path.is_file():
            continue  # hidden files, caches and folders are not code
        if path.suffix == ".pyc":
            continue
        if len(relative) > FILE_NAME_MAX_LENGTH or re.fullmatch(FILE_NAME, relative) is None:
            report.not_mapped(
                resource,
                "CodeUri",
                f"file {relative!r} cannot be inline code (names are letters, digits, '_', '-' and"
                " '.'): build an image with the code, or use kubelambda local",
            )
            return None
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            report.not_mapped(
                resource,
                "CodeUri",
                f"file {relative!r} is not UTF-8 text, and inline code holds only text: build an"
                " image with the code, or use kubelambda local",
            )
            return None
        files[relative] = source
        size += len(relative.encode()) + len(source.encode())
    if not files:
        report.not_mapped(resource, "CodeUri", f"{folder} holds no files")
        return None
    if len(files) > INLINE_MAX_FILES or size > INLINE_LIMIT_BYTES:
        report.not_mapped(
            resource,
            "CodeUri",
            f"{folder} holds {len(files)} files of {size} bytes; inline code holds at most"
            f" {INLINE_MAX_FILES} files and {INLINE_LIMIT_BYTES} bytes (a ConfigMap): build an"
            " image with the code (spec.image), or use kubelambda local",
        )
        return None
    if size > CLIENT_SIDE_APPLY_BYTES:
        report.note(
            resource,
            "CodeUri",
            f"the inline code is {size} bytes: apply it with `kubectl apply --server-side`"
            " (client-side apply keeps a copy in an annotation of at most 256 KiB)",
        )
    return files


def _check_requirements(folder: Path, resource: str, report: Report, *, mode: CodeMode) -> None:
    requirements = folder / "requirements.txt"
    if not requirements.is_file():
        return
    try:
        lines = requirements.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = ["(unreadable)"]
    names = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        match = _REQUIREMENT_NAME.match(line)
        if line and not line.startswith("-") and match is not None:
            name = match.group(1)
            if name.lower().replace("_", "-") not in _PROVIDED:
                names.append(name)
    if not names:
        return
    listed = f"requirements.txt lists {', '.join(names)}"
    if mode == "path":
        report.note(
            resource,
            "CodeUri",
            f"{listed}: kubelambda local installs them as `sam build` would (pip install"
            " --target, cached per requirements.txt)",
        )
    else:
        report.not_mapped(
            resource,
            "CodeUri",
            f"{listed}, which `sam build` would install; a cluster installs nothing: zip the"
            " folder with them (pip install -t FOLDER …) onto S3 for spec.code.s3, or build an"
            " image",
        )
