"""What a pod's runtime imports before it answers ready, checked in fresh isolated interpreters.

In a pod the runtime starts as a new process (`python -I -u -m kubelambda_runtime`) on every cold
start, and each worker as another one before the handler's init: a module either imports is
paid on each cold start. These tests name the modules that are needed only on rare paths (a
custom runtime, /metrics, local mode's zygote, a Decimal result, argparse's options) or that
cost more than the little they were used for (uuid, dataclasses, http's enum), so a change
that brings one back on the start-up path fails here instead of slowing every cold start.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

# This checkout's runtime, first on the path: the interpreter's own site path may hold another
# copy (an editable install of another checkout), and -I ignores PYTHONPATH.
RUNTIME_ROOT = Path(__file__).resolve().parents[3] / "runtime"

# What the server imports before it listens: its entry module and what serve() imports late.
SERVER_PATH = (
    "kubelambda_runtime.__main__",
    "uvloop",
    "kubelambda_runtime.server.endpoints",
    "kubelambda_runtime.server.httpserver",
    "kubelambda_runtime.server.ready",
    "kubelambda_runtime.server.presence",
)
WORKER_PATH = ("kubelambda_runtime.worker.__main__",)

# Needed by neither process before it is ready.
NEVER_AT_START = (
    "argparse",  # the pod's runtime has no options
    "uuid",  # and so "platform": wire/ids.py makes request ids
    "platform",
    "ctypes",  # the subreaper flag is set only when called, and not at all as PID 1
    "decimal",  # only a handler that returns a Decimal has one, and imported it then
    "http",  # wire/http1.py writes HTTPStatus's phrases out
    "http.client",
    "http.server",
    "email",
    "urllib",
    "prometheus_client",  # /metrics imports it on the first scrape
    "kubelambda_runtime.custom",  # a custom runtime's Runtime API: imported for those only
    "kubelambda_runtime.zygote",  # local mode's forking: never in a pod
    "kubelambda_runtime.forking",
)
# A worker has no event loop and parses no HTTP until it is handed a connection (only a warm
# one is); without dataclasses it loads no inspect/ast/dis either.
WORKER_NEVER_AT_START = (
    "asyncio",
    "uvloop",
    "httptools",
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "base64",
    "concurrent.futures",
    "subprocess",
)


def _modules_after(code: str, *options: str) -> set[str]:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            *options,
            "-c",
            code + "\nimport json; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@functools.cache
def _site() -> frozenset[str]:
    """What this interpreter loads before any code runs: its site's, not the runtime's (an
    editable install's finder in the development venv imports pathlib, and with it urllib;
    the image has none)."""
    return frozenset(_modules_after("import sys"))


def imported_by(modules: tuple[str, ...], *, then: str = "") -> set[str]:
    """What a fresh `python -I` adds to sys.modules, beyond its site's, by importing `modules`
    (and running `then`)."""
    code = (
        f"import sys; sys.path.insert(0, {str(RUNTIME_ROOT)!r})\n"
        + "".join(f"import {module}\n" for module in modules)
        + then
    )
    return _modules_after(code) - _site()


def test_the_interpreter_alone_imports_none_of_the_named_modules() -> None:
    # Else the checks below could not see them: without site (-S) the interpreter itself loads
    # none of them, and with it the runtime's additions are measured against it (_site).
    bare = _modules_after("import sys", "-S")
    assert not bare & {*NEVER_AT_START, *WORKER_NEVER_AT_START}
    assert "kubelambda_runtime" in imported_by(("kubelambda_runtime",))


def test_the_checks_import_this_checkouts_runtime() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(RUNTIME_ROOT)!r}); import kubelambda_runtime;"
            " print(kubelambda_runtime.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(done.stdout.strip()).is_relative_to(RUNTIME_ROOT)


@pytest.mark.parametrize("module", NEVER_AT_START)
def test_the_servers_start_up_path_does_not_import(module: str) -> None:
    assert module not in imported_by(SERVER_PATH)


@pytest.mark.parametrize("module", NEVER_AT_START + WORKER_NEVER_AT_START)
def test_the_workers_start_up_path_does_not_import(module: str) -> None:
    assert module not in imported_by(WORKER_PATH)


def test_parsing_a_pods_settings_does_not_import_argparse() -> None:
    loaded = imported_by(
        SERVER_PATH,
        then=(
            "settings, ready_fd = kubelambda_runtime.__main__.parse("
            "[], {'_HANDLER': 'app.handler', 'LAMBDA_TASK_ROOT': '/var/task'})\n"
            "assert settings.handler == 'app.handler' and ready_fd is None"
        ),
    )
    assert "argparse" not in loaded


def test_a_bad_setting_without_options_is_still_worded_with_the_usage() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(RUNTIME_ROOT)!r})\n"
            "from kubelambda_runtime.__main__ import parse\n"
            "parse([], {'_HANDLER': 'app.handler', 'LAMBDA_TASK_ROOT': '/var/task',"
            " 'KUBELAMBDA_PORT': 'eighty'})",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m kubelambda_runtime")
    assert "KUBELAMBDA_PORT must be an integer, got 'eighty'" in done.stderr


def test_options_are_still_parsed() -> None:
    loaded = imported_by(
        SERVER_PATH,
        then=(
            "settings, ready_fd = kubelambda_runtime.__main__.parse("
            "['--handler', 'app.handler', '--code', '/tmp', '--port', '9001', '--ready-fd', '7'],"
            " {})\n"
            "assert (settings.handler, settings.port, ready_fd) == ('app.handler', 9001, 7)"
        ),
    )
    assert "argparse" in loaded


def test_the_first_workers_start_before_asyncio_and_the_pool_are_imported() -> None:
    # The workers' imports and init then overlap the server's own imports.
    code = (
        f"import sys; sys.path.insert(0, {str(RUNTIME_ROOT)!r})\n"
        "from kubelambda_runtime import __main__ as runtime\n"
        "class Stop(Exception): pass\n"
        "def start(args, *, environment, cwd, pass_fds):\n"
        "    print(sorted({'asyncio', 'kubelambda_runtime.server.pool'} & set(sys.modules)))\n"
        "    raise Stop\n"
        "try:\n"
        "    runtime.main(['--handler', 'app.handler', '--code', '/tmp'], start_workers=start)\n"
        "except Stop:\n"
        "    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
