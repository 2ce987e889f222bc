"""Decoding copied spans (:mod:`optimizer.spans`): an input-dependent restriction layered on the output's
compiled constraint, built per request in milliseconds (nothing is compiled).

The output's own constraint (JSON Schema or regex, one compiled index per model file) still decides the
structure. While the text generated so far is inside the JSON string value of a span key (``"text": "Jap``),
:class:`SpanMask` also masks every token that would make the value anything but a substring of that input:
a value starts where a word of the input starts, grows only into a substring of at most the rule's
``max_words`` words, and may close (a token that
starts with ``"``) only where a word ends and, unless it can no longer grow, when the output has no equal
value under that key. So every span parses and is copied; a repeat happens only when the model insists on
a value that ends the input; and right after an item, when the tokens left would not hold another as long
as the longest so far, the list ends there, so a list of spans closes within the token limit. Values
with quotes or backslashes are not copyable (the JSON escape would differ from the input).

Lifecycle: one per constrained call; :meth:`advance` follows each emitted token. The candidate tokens of an
input (vocabulary pieces that occur in it) are found once per input text and model, and cached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from optimizer.models.decode import GuidedMask

_QUOTE, _ESCAPE = '"', "\\"
WORD = re.compile(r"\w")


def _starts_word(text: str, i: int) -> bool:
    return i == 0 or not (WORD.match(text[i - 1]) and WORD.match(text[i]))


def _ends_word(text: str, j: int) -> bool:
    return j == len(text) or not (WORD.match(text[j - 1]) and WORD.match(text[j]))


def _occurs(value: str, source: str, closing: bool) -> bool:
    """``value`` occurs in ``source`` starting at a word start (and, ``closing``, ending at a word end)."""
    i = source.find(value)
    while i != -1:
        if _starts_word(source, i) and (not closing or _ends_word(source, i + len(value))):
            return True
        i = source.find(value, i + 1)
    return False


@lru_cache(maxsize=4096)
def _completions(value: str, source: str, most: int, done: frozenset[str]) -> frozenset[str]:
    """Every value ``value`` may still close as: a substring of ``source`` that starts at a word start with
    ``value``, ends at a word end, has at most ``most`` words, no surrounding space, quote or backslash, and
    is not in ``done``."""
    ends = set()
    i = source.find(value) if value else 0
    while 0 <= i < len(source):
        if _starts_word(source, i) and not source[i].isspace():
            for j in range(i + max(len(value), 1), len(source) + 1):
                span = source[i:j]
                if _QUOTE in span or _ESCAPE in span or len(span.split()) > most:
                    break
                if _ends_word(source, j) and span == span.strip() and span not in done:
                    ends.add(span)
        i = source.find(value, i + 1) if value else i + 1
    return frozenset(ends)


@lru_cache(maxsize=4096)
def _prefixes(ends: frozenset[str]) -> frozenset[str]:
    """Every non-empty prefix of every string in ``ends``."""
    return frozenset(end[:k] for end in ends for k in range(1, len(end) + 1))


class Vocabulary:
    """One model file's token pieces for span decoding: piece -> token ids, and the pieces holding a quote
    (the ones that can close a value). Built once per model file."""

    def __init__(self, pieces: dict[str, list[int]]):
        self.pieces = pieces
        self.piece_of = {i: p for p, ids in pieces.items() for i in ids}
        self.closers = [(p, ids) for p, ids in pieces.items() if p.startswith(_QUOTE)]
        self.continuers = np.asarray([i for p, ids in pieces.items() if p.lstrip().startswith(",") for i in ids],
                                     dtype=np.int64)
        self._candidates = lru_cache(maxsize=512)(self._find)

    def _find(self, source: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return tuple((p, tuple(ids)) for p, ids in self.pieces.items()
                     if p and _QUOTE not in p and _ESCAPE not in p and p in source)

    def candidates(self, source: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The pieces (with their ids) that occur in ``source`` and hold no quote or backslash."""
        return self._candidates(source)


class SpanMask(GuidedMask):
    """:class:`GuidedMask` plus the span restriction for ``rules`` ({"key", "source"} dicts)."""

    def __init__(self, index: Any, forced: dict[int, int | None], vocab_size: int, vocabulary: Vocabulary,
                 rules: Sequence[dict[str, str]], max_tokens: int | None = None):
        super().__init__(index, forced, vocab_size)
        self.vocabulary, self.text = vocabulary, ""
        self.max_tokens, self.used, self.item_ends = max_tokens, 0, [0]  # tokens at each '}' (item ends)
        self.sources = {r["key"]: r["source"] for r in rules if r.get("source")}
        self.max_words = {r["key"]: int(r.get("max_words") or 10**6) for r in rules}
        keys = "|".join(re.escape(k) for k in self.sources)
        self._open = re.compile(rf'"({keys})"\s*:\s*"([^"\\]*)$') if keys else None
        self._closed = re.compile(rf'"({keys})"\s*:\s*"([^"\\]*)"') if keys else None

    def advance(self, token: int) -> None:
        super().advance(token)
        piece = self.vocabulary.piece_of.get(token, "")
        self.text += piece
        self.used += 1
        if "}" in piece:
            self.item_ends.append(self.used)

    def _no_room(self) -> bool:
        """The tokens left would not hold one more item as long as the longest so far (plus the closing
        brackets): the list must end after this item rather than be cut off by the limit."""
        if self.max_tokens is None or len(self.item_ends) < 2:
            return False
        longest = max(b - a for a, b in zip(self.item_ends, self.item_ends[1:], strict=False))
        return self.max_tokens - self.used < 2 * longest + 8

    def _inside(self) -> tuple[str, str] | None:
        """(key, value so far) when the text ends inside a span key's string value."""
        if self._open is None:
            return None
        match = self._open.search(self.text)
        return (match.group(1), match.group(2)) if match else None

    def allowed(self, key: str, value: str) -> list[int]:
        """The token ids that keep ``value`` (under ``key``) a span, or close it (see the module doc).

        A value grows only into a prefix of some value it may still close as (:func:`_completions`: a new
        one, at word boundaries, within ``max_words``); it closes at a word end unless it equals an earlier
        value. When every value the input holds was already given, the value grows along the input and
        closes as soon as it can: a repeat, as short as possible, never a string that is not in the input."""
        source, most = self.sources[key], self.max_words.get(key, 10**6)
        done = {m.group(2) for m in self._closed.finditer(self.text) if m.group(1) == key} if self._closed else set()
        open_ends = _completions(value, source, most, frozenset(done))
        prefixes = _prefixes(open_ends)
        ids: list[int] = []
        for piece, piece_ids in self.vocabulary.candidates(source):
            grown = value + piece
            if open_ends:
                if grown in prefixes:
                    ids.extend(piece_ids)
            elif (value or not piece[0].isspace()) and _occurs(grown, source, closing=False):
                ids.extend(piece_ids)  # nothing new is left: along the input, to the nearest close
        if value and (value in open_ends or (not open_ends and _occurs(value, source, closing=True))
                      or not ids):
            last = self._no_room()
            for piece, piece_ids in self.vocabulary.closers:
                if not (last and "," in piece):  # no room for another item: no closer that starts one
                    ids.extend(piece_ids)
        return ids

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        logits = super().__call__(input_ids, logits)
        inside = self._inside()
        if inside is None:
            if self.text.rstrip().endswith("}") and self._no_room():
                ended = logits.copy()
                ended[self.vocabulary.continuers] = -np.inf  # no ',' after this item: the list closes
                if np.isfinite(ended).any():
                    logits[:] = ended
            return logits
        ids = np.asarray(self.allowed(*inside), dtype=np.int64)
        if ids.size == 0 or not np.isfinite(logits[ids]).any():
            # unreachable for the schemas progopt builds (a non-empty value can always close, an empty one
            # start a word, and a JSON string allows both); a foreign constraint decides alone
            return logits
        kept = logits[ids].copy()
        logits[:] = -np.inf
        logits[ids] = kept
        return logits
