"""The ``kubelambda`` command: one entry point whose subcommands are the modules in
``kubelambda.commands`` (each parses its own flags: ``kubelambda local --help``).

A plain ``pip install kubelambda`` carries what a function pod needs; most commands need the
control-plane extra as well. Such a command run without it says so in one line, and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import version
from typing import Final

__all__ = ["COMMANDS", "INSTALL_CONTROL_PLANE", "Command", "build_parser", "main"]

INSTALL_CONTROL_PLANE: Final = "pip install 'kubelambda[control-plane]'"
# Modules of the project itself: one missing is a broken install, not a missing extra.
_OWN_PACKAGES: Final = frozenset({"kubelambda", "kubelambda_runtime"})


@dataclass(frozen=True)
class Command:
    """A subcommand: its module in kubelambda.commands, run by its ``run(argv)``."""

    help: str
    # Whether it needs the control-plane extra; tests/unit/test_cli.py checks it is true.
    control_plane: bool = True


COMMANDS: Final = {
    "new": Command("write a new function's folder: handler, manifests, test", control_plane=False),
    "local": Command("serve Functions and Triggers on this machine"),
    "invoke": Command("invoke a function through the Lambda Invoke API"),
    "logs": Command("print a function's logs, from local mode or a cluster", control_plane=False),
    "operator": Command("run the controller and autoscaler on a cluster"),
    "gateway": Command("run the event gateway on a cluster"),
    "dispatcher": Command("deliver the asynchronous events kept in NATS"),
    "sam": Command("convert an AWS SAM template into manifests"),
    "usage": Command("print invocations and GB-seconds per function", control_plane=False),
    "console": Command("serve the read-only web console of a cluster's functions"),
    "fetch-code": Command("fetch a Function's package and layers from S3 (its init container)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelambda",
        description="AWS-Lambda-style functions on Kubernetes.",
        epilog="[control-plane]: the command needs the control-plane extra,\n"
        f"  {INSTALL_CONTROL_PLANE}\n"
        "`kubelambda COMMAND --help` tells more.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"kubelambda {version('kubelambda')}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        tag = " [control-plane]" if command.control_plane else ""
        commands.add_parser(name, help=f"{command.help}{tag}", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        try:
            # Imported on demand: each command pulls in only what its process needs.
            module = import_module(f"kubelambda.commands.{name.replace('-', '_')}")
            command: Callable[[Sequence[str]], int] = module.run
            return command(argv[1:])
        except ModuleNotFoundError as missing:
            package = (missing.name or "").partition(".")[0]
            if not package or package in _OWN_PACKAGES:
                raise
            sys.stderr.write(
                f"kubelambda {name} needs the control-plane extra: {INSTALL_CONTROL_PLANE}"
                f" (no module named {package!r})\n"
            )
            return 2
    build_parser().parse_args(argv)
    build_parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
