"""``kubelambda logs``: flags and wiring only. Prints a function's log lines from the files of
a running ``kubelambda local`` (``kubelambda.tools.logfiles``) or from its pods on a cluster
through kubectl (``kubelambda.tools.kubectl``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kubelambda.tools.endpoints import DEFAULT_URL, URL_VARIABLE, gateway_url, port_of
from kubelambda.tools.kubectl import (
    DEFAULT_MAX_LOG_REQUESTS,
    KubectlMissing,
    find_kubectl,
    logs_command,
)
from kubelambda.tools.logfiles import NoLogs, default_folder, follow, read_lines

__all__ = ["build_parser", "run"]

DESCRIPTION = f"""\
Print a function's log lines: what its handler prints and logs, and the runtime's START, END
and REPORT lines.

Local mode (the default): `kubelambda local` writes each function's lines to a folder of its
own, which it names when it starts; this reads the one of the local mode at --url (else
${URL_VARIABLE}, else {DEFAULT_URL}) or at --log-dir. A function writes its
first line at its first invocation. -f follows until local mode stops.

On a cluster (--cluster, or -n/--context): `kubectl logs` on the Function's pods (label
kubelambda.dev/function=NAME), each line prefixed with its pod, with your kubeconfig. A
function scaled to zero has no pods and so no logs; -f follows the pods running when it
starts, not those started later (run it again).

examples:
  kubelambda logs hello
  kubelambda logs hello -f --tail 20
  kubelambda logs hello --cluster -n shop -f
"""


def build_parser(prog: str = "kubelambda logs") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", metavar="NAME", help="the Function's name")
    parser.add_argument("-f", "--follow", action="store_true", help="print new lines as they come")
    parser.add_argument(
        "--tail",
        type=int,
        metavar="N",
        help="only the last N lines written so far (default all)",
    )
    local = parser.add_argument_group("local mode")
    local.add_argument(
        "--url", help=f"local mode's gateway (default ${URL_VARIABLE} or {DEFAULT_URL})"
    )
    local.add_argument("--log-dir", type=Path, metavar="DIR", help="local mode's --log-dir")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--cluster", action="store_true", help="read the pods' logs with kubectl")
    cluster.add_argument(
        "-n", "--namespace", help="the Function's namespace (default kubeconfig's)"
    )
    cluster.add_argument("--context", help="the kubeconfig context (default the current one)")
    cluster.add_argument(
        "--max-log-requests",
        type=int,
        default=DEFAULT_MAX_LOG_REQUESTS,
        metavar="N",
        help="follow at most N pods at once (default %(default)s)",
    )
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.tail is not None and args.tail < 0:
        parser.error("--tail must be 0 or more")
    on_cluster = args.cluster or args.namespace is not None or args.context is not None
    if on_cluster and (args.url or args.log_dir):
        parser.error("--url and --log-dir are local mode's; a cluster's logs come from kubectl")
    if on_cluster:
        return _cluster(args)
    return _local(args)


def _local(args: argparse.Namespace) -> int:
    if args.log_dir is not None:
        folder, where = args.log_dir, f"with --log-dir {args.log_dir}"
    else:
        try:
            url = gateway_url(args.url, os.environ)
            port = port_of(url)
        except ValueError as exc:
            print(f"kubelambda logs: {exc}", file=sys.stderr)
            return 2
        folder, where = default_folder(port), f"for {url}"
    try:
        if args.follow:
            follow(folder, args.name, emit=_emit, tail=args.tail, where=where)
        else:
            for line in read_lines(folder, args.name, tail=args.tail, where=where):
                _emit(line)
    except NoLogs as exc:
        print(f"kubelambda logs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader had enough (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _emit(line: str) -> None:
    print(line, flush=True)


def _cluster(args: argparse.Namespace) -> int:
    try:
        kubectl = find_kubectl()
    except KubectlMissing as exc:
        print(f"kubelambda logs: {exc}", file=sys.stderr)
        return 1
    command = logs_command(
        kubectl=kubectl,
        function=args.name,
        namespace=args.namespace,
        context=args.context,
        follow=args.follow,
        tail=args.tail,
        max_log_requests=args.max_log_requests,
    )
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"kubelambda logs: cannot run {kubectl}: {exc}", file=sys.stderr)
        return 1
