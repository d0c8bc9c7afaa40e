"""Loads the handler ``module.function`` from the code directory, once per worker.

Failures become the faults Lambda reports for them (ImportModuleError, HandlerNotFound,
UserCodeSyntaxError, MalformedHandlerName); an exception raised by the module's own
top-level code propagates as it is, as on Lambda.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from kubelambda_runtime.wire import faults

Handler = Callable[[Any, Any], Any]


def load_handler(handler: str, *, task_root: str) -> Handler:
    """Import the handler's module from ``task_root`` (running its top-level code) and return it."""
    module_name, _, function_name = handler.rpartition(".")
    if not module_name or not function_name:
        raise faults.Fault(
            faults.MALFORMED_HANDLER_NAME,
            f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
        )
    # Lambda allows "folder/module.function" as well as "package.module.function".
    module_name = module_name.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise faults.Fault(
            faults.BUILT_IN_MODULE_CONFLICT,
            f"Cannot use built-in module {module_name} as a handler module",
        )
    _user_path(task_root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise faults.Fault(
            faults.IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        stack = [f'  File "{exc.filename}" Line {exc.lineno}\n        {(exc.text or "").strip()}\n']
        raise faults.Fault(
            faults.USER_CODE_SYNTAX_ERROR,
            f"Syntax error in module '{module_name}': {exc}",
            stack,
        ) from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise faults.Fault(
            faults.HANDLER_NOT_FOUND,
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    if not callable(function):
        raise faults.Fault(
            faults.HANDLER_NOT_FOUND,
            f"Handler '{function_name}' on module '{module_name}' is not callable",
        )
    handler_function: Handler = function
    return handler_function


def _user_path(task_root: str) -> None:
    """Put the task root, then the function's own PYTHONPATH, first on the import path, as
    Lambda's sys.path starts. The worker runs isolated (-I), so neither was on it while the
    runtime imported its own modules."""
    wanted = [task_root, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    for entry in reversed(wanted):
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
