"""YAML read as kubectl and CloudFormation read it: a key repeated in one mapping is an error.

PyYAML's SafeLoader keeps the last value silently, which would hide a second ``spec:`` in a
manifest or a second ``Properties:`` in a template.
"""

from __future__ import annotations

import yaml

__all__ = ["StrictLoader"]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping, naming the key and its line."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
