"""``kubelambda fetch-code``: a function pod's init container. Flags and wiring only: fetches
the zips of the plan the controller pinned (`kubelambda.api.packages.install_plan`) from S3
into the task root and /opt, and says why in the pod's termination message when it cannot."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from kubelambda.api.environment import OPT_ROOT, TASK_ROOT
from kubelambda.api.fetchplan import FetchPlan, install_plan
from kubelambda.api.packages import PackageError
from kubelambda.api.unpack import PackageRefused

__all__ = ["EXIT_BAD_PLAN", "EXIT_REFUSED", "build_parser", "run"]

EXIT_REFUSED: Final = 1
EXIT_BAD_PLAN: Final = 2
# Kubernetes keeps at most 4096 bytes of a termination message.
_MESSAGE_LIMIT: Final = 4000

DESCRIPTION = """\
Fetch a Function's deployment package and layers from S3 and unpack them, as the init
container of its pods (the controller writes the plan; you do not run this by hand).

The code goes into --task-root, the layers into --opt-root in order, together at most 250 MB
unpacked; zips with paths that leave the folder, symlinks, special files or bomb-like
compression are refused. Credentials of the plan's i-th Secret come from the variables
KUBELAMBDA_S3_<i>_AWS_ACCESS_KEY_ID, _AWS_SECRET_ACCESS_KEY and _AWS_REGION; zips without
one are read unsigned. A refusal is written to --termination-log (kubectl describe pod
shows it) and exits 1; a plan that cannot be read exits 2.
"""


def build_parser(prog: str = "kubelambda fetch-code") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan", required=True, help="the fetch plan, as JSON")
    parser.add_argument("--task-root", type=Path, default=Path(TASK_ROOT))
    parser.add_argument("--opt-root", type=Path, default=Path(OPT_ROOT))
    parser.add_argument(
        "--scratch", type=Path, default=Path("/tmp"), help="where zips wait to be unpacked"
    )
    parser.add_argument(
        "--region", default="us-east-1", help="the region when neither spec nor Secret names one"
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        default=Path("/dev/termination-log"),
        help="where a refusal is written for the pod's status",
    )
    return parser


def _say(path: Path, message: str) -> None:
    print(f"kubelambda fetch-code: {message}", file=sys.stderr)
    # Outside a pod there is no termination log: stderr said it.
    with contextlib.suppress(OSError):
        path.write_text(message[:_MESSAGE_LIMIT])


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        plan = FetchPlan.from_json(args.plan)
    except ValueError as exc:
        _say(args.termination_log, str(exc))
        return EXIT_BAD_PLAN
    from kubelambda.platforms.packages import S3Packages  # boto3: only once there is a plan

    try:
        install_plan(
            plan,
            S3Packages(),
            roots={"task": args.task_root, "opt": args.opt_root},
            environ=os.environ,
            default_region=args.region,
            scratch=args.scratch,
            report=lambda line: print(f"kubelambda fetch-code: {line}", flush=True),
        )
    except (PackageError, PackageRefused, OSError) as exc:
        _say(args.termination_log, str(exc))
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(run())
