"""The ``kubelambda`` command: one entry point whose subcommands are the processes in
``kubelambda.commands`` (each parses its own flags: ``kubelambda local --help``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from importlib.metadata import version

# subcommand → (module in kubelambda.commands, one line of help)
COMMANDS = {
    "local": "serve Function and Trigger manifests on this machine, without a cluster",
    "operator": "run the controller and the autoscaler on a cluster",
    "gateway": "run the event gateway on a cluster",
    "dispatcher": "deliver the asynchronous events kept in NATS JetStream",
    "sam": "convert an AWS SAM template into Function and Trigger manifests",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelambda",
        description="AWS-Lambda-style functions on Kubernetes.",
    )
    parser.add_argument(
        "--version", action="version", version=f"kubelambda {version('kubelambda')}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        # Imported on demand: each command pulls in only what its process needs.
        module = import_module(f"kubelambda.commands.{argv[0]}")
        command: Callable[[Sequence[str]], int] = module.run
        return command(argv[1:])
    build_parser().parse_args(argv)
    build_parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
