"""The routing table a gateway serves now: swapped whole on every change (server.py's
`Gateway.set_routes`), read per request by the handlers (`Current()`: the table) and by the
functions' limits (`Current.spec_of`).

Compiled with the request path (setup.py): as methods of the Gateway, which is not, each of the
two reads per request cost an entry into the interpreter (benchmarks/gateway_instructions.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.routing import FunctionEntry, RoutingTable

__all__ = ["Current"]


class Current:
    """The routing table now; call it for the table."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self._functions: Mapping[FunctionKey, FunctionEntry] = table.functions

    def set(self, table: RoutingTable) -> None:
        self.table = table
        self._functions = table.functions

    def __call__(self) -> RoutingTable:
        return self.table

    def spec_of(self, key: FunctionKey) -> Function | None:
        """The spec of Function `key` in the table now; None when it has none or is not there."""
        entry = self._functions.get(key)
        return entry.spec if entry is not None else None
