"""``kubelambda new``: flags and wiring only. Writes a function's folder with
``kubelambda.tools.scaffold``, then says how to run it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kubelambda.tools.scaffold import TEMPLATES, ScaffoldError, render, write

__all__ = ["build_parser", "run"]

DESCRIPTION = """\
Write a new function's folder, ready for `kubelambda local`, pytest and a cluster:

  app.py          the handler: handler(event, context), as on AWS Lambda
  function.yaml   the Function and its Trigger; the code is this folder (spec.code.path)
  event.json      a sample event of the Trigger's kind
  test_NAME.py    pytest: the handler with the sample event, then through kubelambda local
  README.md       how to run it here, and how to deploy it on a cluster

templates:
{templates}

examples:
  kubelambda new hello
  kubelambda new thumbnails --template bucket
  kubelambda local hello/
"""


def build_parser(prog: str = "kubelambda new") -> argparse.ArgumentParser:
    templates = "\n".join(f"  {name:<9} {what}" for name, what in TEMPLATES.items())
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION.format(templates=templates),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name",
        metavar="NAME",
        help="the Function's name: lowercase letters, digits and '-', starting with a letter",
    )
    parser.add_argument(
        "-t",
        "--template",
        choices=tuple(TEMPLATES),
        default="http",
        metavar="TEMPLATE",
        help="http, bucket, schedule or queue: the kind of Trigger (default %(default)s)",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="the folder to write, which must not exist (default ./NAME)",
    )
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    folder: Path = args.output_dir or Path(args.name)
    try:
        files = render(args.name, args.template)
        write(folder, files)
    except ScaffoldError as exc:
        print(f"kubelambda new: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"kubelambda new: cannot write {folder}: {exc}", file=sys.stderr)
        return 1
    print(f"kubelambda new: wrote {folder}/ from the {args.template} template")
    for name in files:
        print(f"  {folder / name}")
    print("next:")
    print(f"  kubelambda local {folder}/")
    print(f"  kubelambda invoke {args.name} --payload @{folder / 'event.json'}")
    print(f"  python -m pytest {folder}/")
    return 0
