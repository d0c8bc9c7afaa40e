"""``kubelambda sam convert``: flags and wiring only. Converts an AWS SAM template with
``kubelambda.api.sam`` and writes the manifests (stdout, or one file per object), then what did
not map (stderr)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from kubelambda.api.sam import Conversion, Kind, SamOptions, Stack, TemplateError, convert_file

__all__ = ["build_parser", "parse_overrides", "run"]

EXIT_NOT_MAPPED: Final = 3
EXIT_BAD_INPUT: Final = 2

DESCRIPTION = """\
Convert an AWS SAM template into Function and Trigger manifests, for kubectl apply and
GitOps. (To serve a template on this machine, `kubelambda local template.yaml` converts it
in memory.)

Mapped: AWS::Serverless::Function's Handler, Runtime (python3.11-3.13), CodeUri (a folder: its
files inlined, at most 100 files and 1 MiB), InlineCode, ImageUri, Timeout, MemorySize,
Environment, ReservedConcurrentExecutions (spec.reservedConcurrency, as
on Lambda), ProvisionedConcurrencyConfig (minReplicas), EventInvokeConfig (spec.delivery),
FunctionName (the Lambda name, kept in the annotation kubelambda.dev/function-name, which the
Invoke API accepts: FunctionName="OrderHandler" reaches Function order-handler), Globals; events
Api and HttpApi (HTTP Triggers, with HttpApi JWT authorizers), S3, Schedule, ScheduleV2, SQS (a
queue Trigger on the JetStream stream named after the queue) and SelfManagedKafka (the Secret
named after the Secrets Manager secret); !Ref, !Sub, !GetAtt, !Join, !Select, !Split,
!FindInMap, !If and Conditions, with Parameters' defaults and --parameter-overrides.

Everything else is listed on stderr, by resource and property:
  not mapped  the template asks for something the manifests do not do, or do differently
  ignored     meaningless here (IAM, tags, build settings)
  note        how something was mapped, and what to create for it (a stream, a Secret)

exit status:
  0  everything mapped (notes and ignored properties aside; with --strict, ignored ones too)
  3  something is not mapped: the manifests are written anyway, read the list
  2  the template cannot be converted (unreadable, not a SAM template, bad overrides)

examples:
  kubelambda sam convert template.yaml > manifests.yaml
  kubelambda sam convert template.yaml -o deploy/ --parameter-overrides Stage=prod
  kubectl apply -f deploy/
"""


def build_parser(prog: str = "kubelambda sam") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="AWS SAM templates as Function and Trigger manifests: see"
        f" `{prog} convert --help`.",
    )
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    convert = commands.add_parser(
        "convert",
        help="write a SAM template's Functions and Triggers",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("template", type=Path, help="the SAM template (YAML or JSON)")
    convert.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="write one file per object into DIR (function-NAME.yaml, trigger-NAME.yaml)"
        " instead of a multi-document YAML on stdout",
    )
    convert.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="values of the template's Parameters, as for sam deploy: KEY=VALUE or"
        " ParameterKey=KEY,ParameterValue=VALUE",
    )
    convert.add_argument("--region", default="us-east-1", help="AWS::Region (default %(default)s)")
    convert.add_argument(
        "--account-id", default="000000000000", help="AWS::AccountId (default %(default)s)"
    )
    convert.add_argument(
        "--stack-name", default="sam-app", help="AWS::StackName (default %(default)s)"
    )
    convert.add_argument("-n", "--namespace", help="set metadata.namespace on every object")
    convert.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 for ignored properties too, not only for those not mapped",
    )
    return parser


def parse_overrides(values: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` and ``ParameterKey=KEY,ParameterValue=VALUE``; raises ValueError."""
    overrides: dict[str, str] = {}
    for item in values:
        if item.startswith("ParameterKey="):
            key_part, separator, value_part = item.partition(",ParameterValue=")
            if not separator:
                raise ValueError(f"{item!r}: expected ParameterKey=KEY,ParameterValue=VALUE")
            overrides[key_part.removeprefix("ParameterKey=")] = value_part
            continue
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ValueError(f"{item!r}: expected KEY=VALUE")
        overrides[key] = value
    return overrides


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the inlined code) as literal blocks, readable in a review."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_text)


def _dump(obj: object) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _write(conversion: Conversion, args: argparse.Namespace, out: TextIO) -> None:
    header = f"# Converted by `kubelambda sam convert` from {args.template.name}\n"
    if args.output_dir is None:
        out.write(header + "---\n".join(_dump(obj) for obj in conversion.objects))
        return
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for obj in conversion.objects:
        kind = str(obj["kind"]).lower()
        name = obj["metadata"]["name"]  # type: ignore[index]
        path = args.output_dir / f"{kind}-{name}.yaml"
        path.write_text(header + _dump(obj), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


def _print_report(conversion: Conversion, err: TextIO) -> None:
    for kind in (Kind.NOT_MAPPED, Kind.IGNORED, Kind.NOTE):
        findings = conversion.report.of_kind(kind)
        if findings:
            print(f"{kind.value} ({len(findings)}):", file=err)
            for finding in findings:
                where = f"{finding.resource}.{finding.prop}" if finding.prop else finding.resource
                print(f"  {where}: {finding.message}", file=err)


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        overrides = parse_overrides(args.parameter_overrides)
        options = SamOptions(
            overrides=overrides,
            stack=Stack(region=args.region, account_id=args.account_id, name=args.stack_name),
            namespace=args.namespace,
        )
        conversion = convert_file(args.template, options)
    except (TemplateError, ValueError) as error:
        print(f"kubelambda sam convert: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        _write(conversion, args, sys.stdout)
    except OSError as error:
        print(f"kubelambda sam convert: cannot write: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_report(conversion, sys.stderr)
    report = conversion.report
    if report.of_kind(Kind.NOT_MAPPED) or (args.strict and report.of_kind(Kind.IGNORED)):
        return EXIT_NOT_MAPPED
    return 0
