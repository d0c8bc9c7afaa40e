"""The routing table a gateway serves now: swapped whole on every change (server.py's
`Gateway.set_routes`), read per request by the handlers (`Current.match`, `Current.resolve`,
or `Current()`: the table) and by the functions' limits (`Current.spec_of`).

Compiled with the request path (setup.py): as methods of the Gateway, which is not, each of the
reads per request cost an entry into the interpreter (benchmarks/gateway_instructions.py). For
the same reason the recent lookups are remembered here, not in the table (routing.py, which is
not compiled): most requests go to a few routes and functions, and a lookup in the table costs
as much as building the event, where one remembered costs a dictionary's lookup. Bounded in
entries and in the length of the path and host (or name) they are kept for, emptied when full,
and forgotten with the table they were found in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.routing import FunctionEntry, RouteMatch, RoutingTable

__all__ = ["Current"]

RECENT: Final = 1024  # lookups of each kind remembered
RECENT_KEY_CHARS: Final = 512  # the longest path and host (or name and qualifier) remembered


class Current:
    """The routing table now; call it for the table."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self._functions: Mapping[FunctionKey, FunctionEntry] = table.functions
        self._matches: dict[tuple[str, str, str | None], RouteMatch] = {}
        self._resolved: dict[tuple[str, str | None], FunctionEntry] = {}

    def set(self, table: RoutingTable) -> None:
        self.table = table
        self._functions = table.functions
        self._matches = {}
        self._resolved = {}

    def __call__(self) -> RoutingTable:
        return self.table

    def match(self, method: str, path: str, host: str | None) -> RouteMatch:
        """`RoutingTable.match` in the table now, remembered."""
        key = (method, path, host)
        found = self._matches.get(key)
        if found is None:
            found = self.table.match(method=method, path=path, host=host)
            _keep(self._matches, key, found, len(path) + (0 if host is None else len(host)))
        return found

    def resolve(self, function_name: str, qualifier: str | None) -> FunctionEntry:
        """`RoutingTable.resolve` in the table now, remembered."""
        key = (function_name, qualifier)
        found = self._resolved.get(key)
        if found is None:
            found = self.table.resolve(function_name, qualifier=qualifier)
            size = len(function_name) + (0 if qualifier is None else len(qualifier))
            _keep(self._resolved, key, found, size)
        return found

    def spec_of(self, key: FunctionKey) -> Function | None:
        """The spec of Function `key` in the table now; None when it has none or is not there."""
        entry = self._functions.get(key)
        return entry.spec if entry is not None else None


def _keep(memo: dict[Any, Any], key: object, found: object, size: int) -> None:
    """Remember `found` under `key` (`size` characters long) within the memo's bounds."""
    if size <= RECENT_KEY_CHARS:
        if len(memo) >= RECENT:
            memo.clear()
        memo[key] = found
