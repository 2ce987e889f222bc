"""Hypothesis fuzz of the data loaders (JSONL, CSV, TSV; bytes, structured rows, mutations) and the config
loaders (compile/evaluate/run options, --map): every input loads or raises the project's own error. A loaded
JSONL row holds no NaN/infinity and no lone surrogate, and its required field is not blank. The artifact
loader's fuzz is ``test_artifact_fuzz.py``."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import string
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.cli import build_parser
from optimizer.data import DataError, load_examples, read_rows
from optimizer.errors import UsageError
from optimizer.tasks import parse_mapping
from tests.reliability.conftest import size

EXAMPLES = size("PROGOPT_FUZZ_EXAMPLES", 300)
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SUFFIXES = [".jsonl", ".csv", ".tsv", ".ndjson"]
KEYS = st.sampled_from(["sentence", "label", "base", "inputs", "dspy_x", "", "a b", "é", "_x", "id"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(["", " ", "\t\n", "\ud800", "a\udfff"]))  # NaN/Infinity, blank, lone surrogates
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=20)
ROWS = st.lists(st.one_of(
    st.fixed_dictionaries({"sentence": st.text(min_size=1, max_size=20) | SCALARS},
                          optional={"label": VALUES, "id": SCALARS, "base": VALUES, "dspy_x": SCALARS}),
    st.dictionaries(KEYS, VALUES, max_size=4)), max_size=6)
CELLS = st.one_of(st.text(alphabet=string.ascii_letters + " é", min_size=1, max_size=12),
                  st.text(alphabet=string.ascii_letters + ',"\n\r\t \x00é', max_size=12))
HEADERS = st.one_of(st.lists(KEYS, max_size=3).map(lambda h: ["sentence", *h]), st.lists(KEYS, min_size=1, max_size=4))


def _mutate(data: bytes, cuts: list[tuple[int, bytes]]) -> bytes:
    """Splice each ``(position, bytes)`` into ``data`` (positions wrap), as a damaged file would be."""
    for pos, chunk in cuts:
        at = pos % (len(data) + 1)
        data = data[:at] + chunk + data[at:]
    return data


MUTATIONS = st.just([]) | st.lists(st.tuples(st.integers(0, 10 ** 6), st.binary(max_size=4) | st.sampled_from(
    [b"\xef\xbb\xbf", b'"', b"\n", b"\r\n", b"[" * 80, b"\xff", b",", b"\t", b"\x00", b"9" * 5000, b"NaN",
     b'{"sentence": ' * 70, "\u2028".encode(), b"1e400", b"-Infinity", b'"\\ud800"', b"\xed\xa0\x80",
     b'"sentence": "x", ', b'"   "', b"[]", b"{}"])), max_size=3)


def _clean(value: object, required: bool = False) -> bool:
    """No NaN/infinity, no lone surrogate anywhere in ``value``; a ``required`` value not blank or empty."""
    if required and (value is None or value in ("", [], {}) or (isinstance(value, str) and not value.strip())):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace") == value
    if isinstance(value, dict):
        return all(_clean(k) and _clean(v) for k, v in value.items())
    return all(_clean(v) for v in value) if isinstance(value, list) else True


def check(data: bytes, suffix: str) -> str:
    """Load ``data`` as a ``suffix`` file: 'ok' or 'error' (a DataError naming the file and a real line)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_bytes(data)
        lines = len(re.split(rb"\r\n|\r|\n", data))  # CSV also ends a line at a lone CR
        try:
            rows = read_rows(path)
            examples = load_examples(path, inputs=["sentence"])
        except DataError as exc:
            assert exc.path == str(path) and str(path) in str(exc)
            assert exc.line is None or 1 <= exc.line <= lines, (exc.line, lines)
            return "error"
        assert len(examples) == len(rows) and all(_clean(ex.sentence, required=True) for ex in examples)
        assert all(_clean(value) for _, row in rows for value in [*row, *row.values()])
        assert all(1 <= line <= lines for line, _ in rows)
        return "ok"


def _run(record_counts, loader: str, prop) -> None:  # noqa: ANN001 - a hypothesis-wrapped function
    """Run one fuzz property, count its outcomes and record them."""
    seen: Counter[str] = Counter()
    given_prop = FUZZ(prop(seen))
    given_prop()
    record_counts(kind="fuzz", loader=loader, inputs=sum(seen.values()), **seen)
    assert sum(seen.values()) >= min(EXAMPLES, 50)


def test_random_bytes_load_or_raise_data_error(record_counts) -> None:
    def prop(seen):
        @given(data=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES))
        def run(data: bytes, suffix: str) -> None:
            seen[check(data, suffix)] += 1
        return run
    _run(record_counts, "data: random bytes", prop)


def test_jsonl_rows_with_damage_load_or_raise_data_error(record_counts) -> None:
    def prop(seen):
        @given(rows=ROWS, bom=st.booleans(), crlf=st.booleans(), ascii=st.booleans(), cuts=MUTATIONS)
        def run(rows, bom, crlf, ascii, cuts) -> None:  # ascii: lone surrogates as \ud800 escapes, else as bytes
            text = ("\r\n" if crlf else "\n").join(json.dumps(r, ensure_ascii=ascii) for r in rows)
            raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")
            seen[check(_mutate(raw, cuts), ".jsonl")] += 1
        return run
    _run(record_counts, "data: JSONL rows, damaged", prop)


def test_csv_rows_with_damage_load_or_raise_data_error(record_counts) -> None:
    def prop(seen):
        @given(header=HEADERS,
               cells=st.lists(st.lists(CELLS, max_size=5), max_size=6), tab=st.booleans(), cuts=MUTATIONS)
        def run(header, cells, tab, cuts) -> None:
            out = io.StringIO()
            writer = csv.writer(out, delimiter="\t" if tab else ",")
            writer.writerow(header)
            writer.writerows(cells)
            seen[check(_mutate(out.getvalue().encode(), cuts), ".tsv" if tab else ".csv")] += 1
        return run
    _run(record_counts, "data: CSV/TSV rows, damaged", prop)


VALID_VALUES = ["1", "3", "0.5", "direct", "cot", "json", "compact", "local/gemma3-270m", "tpe", "quality",
                "sentiment=label"]
ODD_VALUES = ["0", "-5", "nan", "inf", "1e9", "x", "", "sc1", "sc3", "xml", "smolm2", "openai/gpt-4o-mini",
              "local/smollm2-135m", "a=b", "a", "=", "9" * 30]
OPTION_VALUES = st.one_of(st.sampled_from(VALID_VALUES), st.sampled_from(ODD_VALUES), st.text(max_size=8))
OPTIONS = st.sampled_from(["--budget", "--budget-cost", "--budget-seconds", "--limit", "--train-limit",
                           "--minibatch", "--num-threads", "--strategies", "--formats", "--models", "--seed",
                           "--sampler", "--strategy", "--objectives", "--max-cost", "--map"])


def test_command_line_options_parse_or_raise_usage_error(record_counts) -> None:
    def prop(seen):
        @given(argv=st.lists(st.tuples(OPTIONS, OPTION_VALUES), max_size=4))
        def run(argv) -> None:
            tokens = ["compile", "programs/sentiment.py:Sentiment", *[t for pair in argv for t in pair]]
            try:
                args = build_parser().parse_args(tokens)
                parse_mapping(args.map)
            except UsageError as exc:
                assert exc.what and exc.where
                seen["error"] += 1
                return
            assert args.budget > 0 and (args.limit is None or args.limit >= 0) and args.minibatch > 0
            seen["ok"] += 1
        return run
    _run(record_counts, "config: command-line options", prop)
