"""A CodeUri folder as spec.code: its files inline for a cluster (within a ConfigMap's bounds),
or its path for local mode; what cannot go inline, and dependencies sam build would install,
are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelambda.api.sam.code import CodeMode, folder_code, inline_code
from kubelambda.api.sam.report import Kind, Report


def folder(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def test_the_folder_goes_inline_without_caches_and_hidden_files(tmp_path: Path) -> None:
    code = folder(
        tmp_path / "src",
        {
            "app.py": "def handler(e, c): return e\n",
            "lib/util.py": "X = 1\n",
            "lib/__pycache__/util.cpython-312.pyc": b"\x00",
            "stale.pyc": b"\x00",
            ".env": "SECRET=1\n",
            ".git/config": "[core]\n",
        },
    )
    report = Report()
    spec = folder_code(code, template_dir=tmp_path, mode="inline", resource="Fn", report=report)
    assert spec == {
        "inline": {"files": {"app.py": "def handler(e, c): return e\n", "lib/util.py": "X = 1\n"}}
    }
    assert report.findings == []


def test_local_mode_names_the_folder_relative_to_the_template(tmp_path: Path) -> None:
    code = folder(tmp_path / "functions" / "orders", {"app.py": ""})
    spec = folder_code(
        code, template_dir=tmp_path / "deploy", mode="path", resource="Fn", report=Report()
    )
    assert spec == {"path": "../functions/orders"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"logo.png": b"\x89PNG\r\n\x1a\n\xff"}, "file 'logo.png' is not UTF-8 text"),
        ({"my file.py": ""}, "file 'my file.py' cannot be inline code"),
        ({f"m{i}.py": "" for i in range(101)}, "holds 101 files of"),
        ({"big.py": "x" * (1024 * 1024)}, "inline code holds at most 100 files and 1048576 bytes"),
        ({}, "holds no files"),
    ],
)
def test_what_cannot_go_inline_is_not_mapped(
    tmp_path: Path, files: dict[str, bytes | str], message: str
) -> None:
    code = folder(tmp_path / "src", files)
    code.mkdir(exist_ok=True)
    report = Report()
    assert (
        folder_code(code, template_dir=tmp_path, mode="inline", resource="Fn", report=report)
        is None
    )
    [finding] = report.findings
    assert (finding.kind, finding.resource, finding.prop) == (Kind.NOT_MAPPED, "Fn", "CodeUri")
    assert message in finding.message


def test_a_missing_folder_is_not_mapped(tmp_path: Path) -> None:
    report = Report()
    assert (
        folder_code(
            tmp_path / "gone", template_dir=tmp_path, mode="path", resource="Fn", report=report
        )
        is None
    )
    assert "is not a folder" in report.findings[0].message


def test_large_inline_code_says_to_apply_server_side(tmp_path: Path) -> None:
    code = folder(tmp_path / "src", {"app.py": "x" * (300 * 1024)})
    report = Report()
    assert folder_code(code, template_dir=tmp_path, mode="inline", resource="Fn", report=report)
    [finding] = report.findings
    assert finding.kind is Kind.NOTE and "kubectl apply --server-side" in finding.message


@pytest.mark.parametrize(("mode", "kind"), [("path", Kind.NOTE), ("inline", Kind.NOT_MAPPED)])
def test_requirements_sam_build_would_install_are_listed(
    tmp_path: Path, mode: CodeMode, kind: Kind
) -> None:
    code = folder(
        tmp_path / "src",
        {
            "app.py": "",
            "requirements.txt": "# deps\nboto3==1.34\nrequests>=2  # http\naws_lambda_powertools\n"
            "-r base.txt\n\nbotocore\n",
        },
    )
    report = Report()
    assert folder_code(code, template_dir=tmp_path, mode=mode, resource="Fn", report=report)
    [finding] = report.findings
    assert finding.kind is kind
    assert "requirements.txt lists requests, aws_lambda_powertools" in finding.message
    assert ("kubelambda local installs them" in finding.message) == (mode == "path")


def test_inline_code_is_the_handlers_module() -> None:
    assert inline_code("pkg.index.handler", "X = 1") == {
        "inline": {"files": {"pkg/index.py": "X = 1"}}
    }
