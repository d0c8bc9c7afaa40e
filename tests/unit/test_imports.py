"""The import graphs of both packages have no cycles (TYPE_CHECKING imports included): a module
never needs, even for a type, one that needs it. The layers themselves are import-linter's
contracts in pyproject.toml, run by the test command."""

from __future__ import annotations

import sys

import grimp
import pytest


def cycles(package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph = grimp.build_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for module in sorted(graph.modules):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


@pytest.mark.parametrize("package", ["kubelambda", "kubelambda_runtime"])
def test_no_import_cycles(package: str) -> None:
    assert cycles(package) == []
