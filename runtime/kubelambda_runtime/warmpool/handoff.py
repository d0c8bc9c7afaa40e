"""The pool process's first step (``become_pool``), which ``python -m kubelambda_runtime`` runs
when ``KUBELAMBDA_POOL_PORT`` is set, and its hand-off to the second (``read``).

The first step hashes the bearer token and starts ``python -I -u -m kubelambda_runtime.warmpool
FD`` in its own place (same pid), with an environment of only what a process reads at start;
the rest, without the token, is in the memfd FD. So the pool never holds the token, and a
runtime forked from it finds neither the token nor the pool's variables, not even in
/proc/self/environ (which shows the environment a process was started with).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import NamedTuple, NoReturn

from kubelambda_runtime.warmpool import settings
from kubelambda_runtime.wire.config import ConfigError
from kubelambda_runtime.wire.startup import is_read_at_start

SECOND_STEP = "kubelambda_runtime.warmpool"


class Handoff(NamedTuple):
    env: dict[str, str]  # the pool's environment, without the token
    token_sha256: bytes


def become_pool(env: dict[str, str]) -> NoReturn:
    """Check the pool's settings and become its second step; exit 2 naming a wrong one."""
    try:
        settings.from_environment(env)
        token = settings.token(env)
    except ConfigError as exc:
        sys.stderr.write(f"python -m kubelambda_runtime (warm pool): {exc}\n")
        sys.exit(2)
    del env[settings.TOKEN_VARIABLE]
    document = {"env": env, "token_sha256": hashlib.sha256(token.encode()).hexdigest()}
    fd = os.memfd_create("kubelambda-pool", 0)  # without CLOEXEC: the second step reads it
    os.write(fd, json.dumps(document).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    startup = {name: value for name, value in env.items() if is_read_at_start(name)}
    os.execve(sys.executable, [sys.executable, "-I", "-u", "-m", SECOND_STEP, str(fd)], startup)


def read(fd: int) -> Handoff:
    with open(fd, "rb") as stream:
        document = json.load(stream)
    return Handoff(document["env"], bytes.fromhex(document["token_sha256"]))
