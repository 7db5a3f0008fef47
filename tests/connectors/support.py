"""Helpers for the connector tests."""

from __future__ import annotations

import copy
from typing import Any


def changed(base: Any, path: str, value: Any) -> Any:
    """A deep copy of `base` with the value at dotted `path` ("line_items.0.price") replaced."""
    payload = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return payload
