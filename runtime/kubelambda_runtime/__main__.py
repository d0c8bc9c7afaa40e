"""``python -m kubelambda_runtime``: start the worker processes, then serve the invoke endpoint.

Workers are spawned before the server is even imported (asyncio, the pool, the HTTP server:
server/prespawn.py starts them), so their imports and the handler's init run while the server
starts: a function is ready about as soon as either is. Local mode's zygote
(zygote.py) calls ``main`` in a forked child instead, with every module already imported.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from kubelambda_runtime.server import prespawn, taskcode
from kubelambda_runtime.wire import config, processes
from kubelambda_runtime.wire.board import Board

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from kubelambda_runtime.server.pool import Pool
    from kubelambda_runtime.server.workerprocess import WorkerProcess

# The announcement's bearer token (server/presence.py, not imported before the workers start: it
# brings asyncio). Taken out of the environment, so no handler finds it there.
ANNOUNCE_KEY = "KUBELAMBDA_ANNOUNCE_KEY"

HELP = """\
Serve a Lambda-style Python handler on the AWS Lambda Runtime Interface Emulator's
invoke endpoint: POST /2015-03-31/functions/function/invocations (event JSON in,
result JSON out), plus GET /healthz and GET /metrics.

Settings come from the environment Lambda sets (_HANDLER, LAMBDA_TASK_ROOT,
AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_MEMORY_SIZE, AWS_LAMBDA_FUNCTION_TIMEOUT,
AWS_REGION) and KUBELAMBDA_CONCURRENCY / KUBELAMBDA_PORT / KUBELAMBDA_HOST /
KUBELAMBDA_METRICS_PORT (a second port with only /metrics and /healthz); the options below
override them.

With KUBELAMBDA_POOL_PORT set (and no options) it is a warm pool's pod instead: it waits on
that port to be specialised into one function's runtime (docs/contracts.md, "Warm pool").

With KUBELAMBDA_CODE_FILES set (a JSON array of paths relative to LAMBDA_TASK_ROOT, e.g.
["app.py", "pkg/util.py"]; file i's text in KUBELAMBDA_CODE_<i>), it first writes those files
into the task root, read-only; it exits 1 naming the problem if one exists already, leaves the
task root, or cannot be written. The handler sees none of these variables.

With KUBELAMBDA_ANNOUNCE_URL, KUBELAMBDA_ANNOUNCE_KEY, KUBELAMBDA_POD_NAME and
KUBELAMBDA_POD_IP all set (the operator sets them in a Function's Deployment pods), it tells
the operator once it is ready that this pod serves: one POST to that URL, with the key as its
bearer token. The handler does not see the key.

example:
  python -m kubelambda_runtime --handler app.handler --code examples/hello --port 9000
  curl -d '{"name": "you"}' localhost:9000/2015-03-31/functions/function/invocations
"""


def parse(argv: list[str], env: dict[str, str]) -> tuple[config.Settings, int | None]:
    """The settings, and the descriptor to signal readiness on (``--ready-fd``), if any."""
    if not argv:
        # A pod's runtime has no options, only its environment: it never imports argparse
        # (a few ms of every cold start), unless to word a bad setting.
        try:
            return config.from_environment(env), None
        except config.ConfigError as exc:
            _parser().error(str(exc))
    parser = _parser()
    args = parser.parse_args(argv)
    overrides = {
        "_HANDLER": args.handler,
        "LAMBDA_TASK_ROOT": os.path.abspath(args.code) if args.code else None,
        "AWS_LAMBDA_FUNCTION_NAME": args.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": args.memory,
        "AWS_LAMBDA_FUNCTION_TIMEOUT": args.timeout,
        "KUBELAMBDA_CONCURRENCY": args.concurrency,
        "KUBELAMBDA_HOST": args.host,
        "KUBELAMBDA_PORT": args.port,
    }
    for name, value in overrides.items():
        if value is not None:
            env[name] = str(value)
    try:
        return config.from_environment(env), args.ready_fd
    except config.ConfigError as exc:
        parser.error(str(exc))


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m kubelambda_runtime",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--handler", help="module.function, as on Lambda (env _HANDLER)")
    parser.add_argument("--code", help="folder holding the handler's code (env LAMBDA_TASK_ROOT)")
    parser.add_argument("--function-name", help="env AWS_LAMBDA_FUNCTION_NAME")
    parser.add_argument(
        "--memory", type=int, help="memory size in MB (env AWS_LAMBDA_FUNCTION_MEMORY_SIZE)"
    )
    parser.add_argument("--timeout", type=float, help="seconds (env AWS_LAMBDA_FUNCTION_TIMEOUT)")
    parser.add_argument(
        "--concurrency", type=int, help="invocations at once (env KUBELAMBDA_CONCURRENCY)"
    )
    parser.add_argument(
        "--host", help="address to listen on (env KUBELAMBDA_HOST, default 0.0.0.0)"
    )
    parser.add_argument("--port", type=int, help="port (env KUBELAMBDA_PORT, default 8080)")
    parser.add_argument(
        "--ready-fd",
        type=int,
        metavar="FD",
        help="once listening, write the health (ready or init_failed) and a newline on this "
        "inherited descriptor, then close it: a supervisor's readiness signal",
    )
    return parser


def main(
    argv: list[str] | None = None, *, start_workers: prespawn.Start = prespawn.exec_worker
) -> int:
    """Run the runtime until it is stopped. ``start_workers`` starts the first workers (the
    zygote's runtimes fork them); replacements are always new processes."""
    env = dict(os.environ)
    args = sys.argv[1:] if argv is None else argv
    if not args and env.get("KUBELAMBDA_POOL_PORT"):
        # A warm pool's pod: import everything, then wait to be specialised (warmpool/).
        from kubelambda_runtime.warmpool.handoff import become_pool

        become_pool(env)
    settings, ready_fd = parse(args, env)
    # Before any worker starts: what the handler must not find in its environment leaves both
    # the environment the workers get and this process's own (a fork inherits it).
    announce_key = env.pop(ANNOUNCE_KEY, "")
    code = taskcode.take(env)
    for name in (ANNOUNCE_KEY, *code):
        os.environ.pop(name, None)
    if code:
        try:
            taskcode.write(taskcode.files(code), task_root=settings.task_root)
        except taskcode.CodeError as exc:
            sys.stderr.write(f"python -m kubelambda_runtime: {exc}\n")
            return 1
    # Before any worker starts: what an environment the server kills leaves comes back to
    # the server to be ended, instead of living on under PID 1.
    processes.become_child_subreaper()
    board = Board.create(settings.concurrency)
    started = prespawn.start_first(settings, environment=env, board=board, start=start_workers)
    # Imported only now, while the workers import theirs and run the handler's init: the pool
    # brings asyncio and most of the server's modules.
    from kubelambda_runtime.server.pool import Pool

    pool = Pool(settings, environment=env, board=board)
    spawned = pool.adopt(started)

    import uvloop

    uvloop.run(
        serve(
            settings,
            pool,
            spawned,
            ready_fd=ready_fd,
            environment=env,
            announce_key=announce_key,
        )
    )
    return 0


async def serve(
    settings: config.Settings,
    pool: Pool,
    spawned: list[WorkerProcess],
    *,
    ready_fd: int | None = None,
    environment: Mapping[str, str] | None = None,
    announce_key: str = "",
) -> None:
    """Serve until SIGTERM or SIGINT, then let invocations in progress finish. Once the health
    is known it is written on ``ready_fd``, and the pod announced with ``announce_key`` if
    ``environment`` says to (server/presence.py)."""
    import asyncio

    from kubelambda_runtime.server.endpoints import RuntimeApp
    from kubelambda_runtime.server.httpserver import HttpServer
    from kubelambda_runtime.server.ready import announce

    pool.start(spawned)
    app = RuntimeApp(settings=settings, pool=pool)
    server = HttpServer(app.handle, max_body=config.MAX_PAYLOAD_BYTES)
    servers = [(server, settings.port)]
    if settings.metrics_port:
        servers.append((HttpServer(app.handle_admin, max_body=0), settings.metrics_port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for listening, port in servers:
        try:
            await listening.start(settings.host, port)
        except OSError as exc:
            print(f"kubelambda_runtime: cannot listen on {settings.host}:{port}: {exc}")
            await pool.close()
            raise SystemExit(1) from exc

    def health() -> str:
        return pool.health()[0]

    def boots() -> list[asyncio.Future[Any]]:
        return [slot.boot for slot in pool.slots if slot.boot is not None]

    announcing: list[asyncio.Future[Any]] = []
    if ready_fd is not None:
        announcing.append(asyncio.ensure_future(announce(ready_fd, health=health, boots=boots)))
    # Imported only for a pod that announces: local mode's forked runtimes never do. Without
    # the key (its Secret is optional) the pod is not announced, and says nothing of it.
    if environment and environment.get("KUBELAMBDA_ANNOUNCE_URL") and announce_key:
        from kubelambda_runtime.server import presence

        announcing.append(
            asyncio.ensure_future(
                presence.announce(
                    environment,
                    key=announce_key,
                    port=settings.port,
                    health=health,
                    boots=boots,
                )
            )
        )
    await stop.wait()
    for task in announcing:
        task.cancel()
    await asyncio.gather(*announcing, return_exceptions=True)
    grace = settings.timeout_seconds + 1.0
    stopping = [asyncio.ensure_future(listening.stop(grace=grace)) for listening, _ in servers]
    # Connections the workers hold come back after the invocation they run, then close.
    await pool.release_all(within=grace)
    await asyncio.gather(*stopping)
    await pool.close()


if __name__ == "__main__":
    sys.exit(main())
