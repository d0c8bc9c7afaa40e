"""A Function's pod logs on a cluster for ``kubelambda logs --cluster``: ``kubectl logs`` on
the pods labelled with the Function's name, so the user's kubeconfig, context and credentials
apply as for any kubectl command (kubelambda itself talks to the API only in its operator)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Final

__all__ = [
    "DEFAULT_MAX_LOG_REQUESTS",
    "FUNCTION_LABEL",
    "KubectlMissing",
    "find_kubectl",
    "logs_command",
]

# kubelambda.api.labels.FUNCTION_LABEL, which the operator puts on a Function's pods (the api
# package needs the control-plane's YAML to import; `logs` needs only the standard library).
FUNCTION_LABEL: Final = "kubelambda.dev/function"
# kubectl's default of 5 concurrent streams would refuse a function scaled past 5 pods.
DEFAULT_MAX_LOG_REQUESTS: Final = 20


class KubectlMissing(Exception):
    """No kubectl on PATH; the message says how to get one."""


def find_kubectl(which: Callable[[str], str | None] = shutil.which) -> str:
    found = which("kubectl")
    if found is None:
        raise KubectlMissing(
            "kubectl is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/) to read"
            " a cluster's pod logs; a function served by `kubelambda local` needs no --cluster"
        )
    return found


def logs_command(
    *,
    kubectl: str,
    function: str,
    namespace: str | None,
    context: str | None,
    follow: bool,
    tail: int | None,
    max_log_requests: int = DEFAULT_MAX_LOG_REQUESTS,
) -> list[str]:
    """The kubectl command that prints the logs of ``function``'s pods, each line prefixed
    with its pod and container. ``namespace``/``context`` None: kubeconfig's current ones."""
    command = [kubectl]
    if context is not None:
        command += ["--context", context]
    if namespace is not None:
        command += ["--namespace", namespace]
    command += [
        "logs",
        "--selector",
        f"{FUNCTION_LABEL}={function}",
        "--prefix",
        # With a selector kubectl shows 10 lines unless told: the same as without, all of them.
        f"--tail={-1 if tail is None else tail}",
        f"--max-log-requests={max_log_requests}",
    ]
    if follow:
        command.append("--follow")
    return command
