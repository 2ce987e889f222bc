"""The sweep file as YAML nodes: where a value sits (its line and key path), and what PyYAML would take
silently or fail on without a line: a key given twice in one mapping (the last one wins), an integer of more
digits than Python converts (a bare ``ValueError``).

>>> node = yaml.compose(text)
>>> first_problem(node)          # ((key path parts), line, message) or None
>>> line_of(node, ("matrix", "seed", 1)), key_path(("matrix", "seed", 1))
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import yaml

INT_TAG = "tag:yaml.org,2002:int"


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (the deepest node that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            match = node.value[key]
        else:
            match = None
        if match is None:
            break
        node, line = match, match.start_mark.line + 1
    return line


def key_path(loc: tuple[Any, ...]) -> str:
    """``("matrix", "seed", 1)`` -> ``matrix.seed[1]``."""
    return "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(loc))


def first_problem(node: yaml.Node | None) -> tuple[tuple[Any, ...], int, str] | None:
    """The first (shallowest) duplicate mapping key or over-long integer: its key path, line and what is
    wrong; ``None`` when there is neither. Iterative: any nesting the YAML composer accepted is walked."""
    limit = sys.get_int_max_str_digits()
    queue: deque[tuple[yaml.Node, tuple[Any, ...]]] = deque([(node, ())] if node is not None else [])
    while queue:
        item, loc = queue.popleft()
        if isinstance(item, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in item.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else repr(key)
                if name in seen:
                    return ((*loc, name), key.start_mark.line + 1, "the key appears twice in one mapping "
                            "(YAML would keep the last one silently)")
                seen.add(name)
                queue.append((value, (*loc, name)))
        elif isinstance(item, yaml.SequenceNode):
            queue.extend((value, (*loc, i)) for i, value in enumerate(item.value))
        elif isinstance(item, yaml.ScalarNode) and item.tag == INT_TAG:
            digits = len(item.value.lstrip("+-").replace("_", ""))
            if limit and digits > limit:
                return loc, item.start_mark.line + 1, f"an integer of {digits} digits is out of range"
    return None
