"""A regular expression as a llama.cpp grammar (GBNF), for exporting regex-constrained steps.

OpenAI-compatible APIs cannot express a regex constraint; llama.cpp's servers take a ``grammar``. This
translates the regex subset progopt's adapters emit (literals, classes with ranges and ``\\d \\s \\w``,
``.``, groups, alternation, greedy and lazy repeats, anchors) through Python's own regex parser, so the
grammar accepts exactly the strings the regex fully matches. Anything else (look-arounds, back-references,
negated categories inside a class) raises ``ValueError`` naming it: an export then says the step runs
unconstrained, never that it is constrained when it is not.

>>> regex_to_gbnf(r" (World|Sports)\\n?")
'root ::= " " (("World" | "Sports")) ("\\\\n")?\\n'
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+: the parser behind `re`, the only complete one for Python's regex syntax
    from re import _constants as constants  # type: ignore[attr-defined]
    from re import _parser as parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as constants  # type: ignore[no-redef]
    import sre_parse as parser  # type: ignore[no-redef]

_LITERAL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
_CLASS_SPECIAL = set("]^-[\\")
_CATEGORIES = {constants.CATEGORY_DIGIT: "0-9", constants.CATEGORY_SPACE: " \\t\\n\\r\\f\\v",
               constants.CATEGORY_WORD: "a-zA-Z0-9_"}


def _char(c: str, in_class: bool = False) -> str:
    if c in _LITERAL_ESCAPES and (not in_class or c != '"'):
        return _LITERAL_ESCAPES[c]
    if in_class and c in _CLASS_SPECIAL:
        return "\\" + c
    if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F:
        return f"\\x{ord(c):02X}"
    return c


def _class(items: list[tuple[Any, Any]]) -> str:
    negate = bool(items) and items[0][0] is constants.NEGATE
    parts = []
    for op, av in items[1:] if negate else items:
        if op is constants.LITERAL:
            parts.append(_char(chr(av), in_class=True))
        elif op is constants.RANGE:
            parts.append(f"{_char(chr(av[0]), True)}-{_char(chr(av[1]), True)}")
        elif op is constants.CATEGORY and av in _CATEGORIES:
            parts.append(_CATEGORIES[av])
        else:
            raise ValueError(f"regex class item {op} {av} has no grammar form")
    return f"[{'^' if negate else ''}{''.join(parts)}]"


def _repeat(lo: int, hi: int, body: str) -> str:
    if hi is constants.MAXREPEAT or hi == constants.MAXREPEAT:
        return f"({body})" + {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    if (lo, hi) == (0, 1):
        return f"({body})?"
    return f"({body}){{{lo}}}" if lo == hi else f"({body}){{{lo},{hi}}}"


def _item(op: Any, av: Any) -> str:
    if op is constants.LITERAL:
        return f'"{_char(chr(av))}"'
    if op is constants.NOT_LITERAL:
        return f"[^{_char(chr(av), True)}]"
    if op is constants.ANY:
        return "[^\\n]"
    if op is constants.IN:
        return _class(av)
    if op is constants.BRANCH:
        return "(" + " | ".join(_sequence(branch) for branch in av[1]) + ")"
    if op is constants.SUBPATTERN:
        return f"({_sequence(av[-1])})"
    if op in (constants.MAX_REPEAT, constants.MIN_REPEAT, getattr(constants, "POSSESSIVE_REPEAT", None)):
        lo, hi, sub = av
        return _repeat(lo, hi, _sequence(sub))
    if op is constants.AT and av in (constants.AT_BEGINNING, constants.AT_END, constants.AT_BEGINNING_STRING,
                                      constants.AT_END_STRING):
        return ""
    raise ValueError(f"regex construct {op} has no grammar form")


def _sequence(items: Any) -> str:
    out: list[str] = []
    for op, av in items:
        piece = _item(op, av)
        if piece.startswith('"') and out and out[-1].startswith('"') and out[-1].endswith('"'):
            out[-1] = out[-1][:-1] + piece[1:]  # merge adjacent literals
        elif piece:
            out.append(piece)
    return " ".join(out) or '""'


def regex_to_gbnf(pattern: str) -> str:
    """The GBNF grammar (one ``root`` rule) of ``pattern``'s full matches; ``ValueError`` if it cannot be one."""
    try:
        tree = parser.parse(pattern)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return f"root ::= {_sequence(tree)}\n"
