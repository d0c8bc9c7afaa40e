"""``kubelambda local``: read Function and Trigger manifests, then serve them on this machine.

``run`` parses the command line (commands/local_options.py), opens the function log files,
and runs ``serve`` (commands/local_serving.py) on uvloop until a signal stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from kubelambda.api import ManifestError
from kubelambda.api.subscriptions import BucketError
from kubelambda.commands.local_options import build_parser
from kubelambda.commands.local_serving import serve
from kubelambda.platforms.local.functions import UnsupportedLocally
from kubelambda.platforms.local.output import Output
from kubelambda.tools.logfiles import LogFiles, default_folder

__all__ = ["run"]


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(signum, task.cancel)
        files = _log_files(args)
        output = Output(sys.stdout.fileno(), copy=files)
        if files is not None:
            output(f"kubelambda local: function logs in {files.folder} (kubelambda logs NAME)")
        try:
            await serve(args, output=output)
        finally:
            output.close()

    try:
        _run(main())
    except (ManifestError, UnsupportedLocally, ValueError) as exc:
        print(f"kubelambda local: {exc}", file=sys.stderr)
        return 2
    except (OSError, BucketError) as exc:
        print(f"kubelambda local: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        pass
    return 0


def _log_files(args: argparse.Namespace) -> LogFiles | None:
    folder = args.log_dir or default_folder(args.port)
    try:
        return LogFiles.open(folder, temporary=args.log_dir is None)
    except OSError as exc:  # another local mode's folder, or none can be made: serve anyway
        print(f"kubelambda local: function logs are not written to files: {exc}", file=sys.stderr)
        return None


def _run(main: Coroutine[Any, Any, None]) -> None:
    # uvloop, as `kubelambda gateway` runs: at the file-descriptor limit, asyncio's own
    # accept loop logs a traceback for each of up to 2,048 failed accepts per wake-up and
    # schedules as many retries (CPython issue 151615: ~10,000 tracebacks a second), while
    # libuv drops the connections it cannot take, quietly (watch_descriptors says so once).
    try:
        import uvloop
    except ImportError:  # Windows, where uvloop does not exist
        asyncio.run(main)
    else:
        uvloop.run(main)
