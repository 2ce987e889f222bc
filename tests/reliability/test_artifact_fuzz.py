"""Hypothesis fuzz of the artifact loader with the inputs outside probing found (issue #36) and their kin:
version strings and numbers of thousands of digits, lone surrogates in values and keys (escaped, or raw as
invalid UTF-8), duplicate keys, NaN/Infinity/1e400, deep nesting, blank and empty values, a byte-order mark,
non-UTF-8 bytes, truncation; re-hashed or not. Every input to ``read_artifact``, ``load_artifact`` and
``progopt validate`` loads or raises an :class:`ArtifactError` naming the file and a JSON path; any other
exception is counted (``other``) and fails the test with the first few inputs that raised it.

CI runs a derandomized sample (``PROGOPT_ARTIFACT_FUZZ_EXAMPLES`` per test); the reliability benchmark runs it
in chunks of other seeds (``PROGOPT_FUZZ_SEED``) to 100,000 inputs and more."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from optimizer.artifact import ArtifactError, TrustPolicy, content_hash, load_artifact, read_artifact
from tests.reliability.conftest import size

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "compiled-program.v1.json"
EXAMPLES = size("PROGOPT_ARTIFACT_FUZZ_EXAMPLES", 1000)
SEED = os.environ.get("PROGOPT_FUZZ_SEED")  # unset: derandomized (the same inputs every run)
FRAG, KEY, HASH = "\x00FRAG\x00", "\x00KEY\x00", "\x00HASH\x00"  # placeholders, replaced in the JSON text
PATHS = [("format_version",), ("content_sha256",), ("program",), ("program", "ref"), ("program", "source_sha256"),
         ("steps",), ("steps", "classify"), ("steps", "classify", "signature", "instructions"),
         ("steps", "classify", "signature", "inputs"), ("steps", "classify", "signature", "inputs", "sentence"),
         ("steps", "classify", "demos"), ("steps", "classify", "demos", 0),
         ("steps", "classify", "demos", 0, "sentence"), ("steps", "classify", "model"),
         ("steps", "classify", "model", "name"), ("steps", "classify", "model", "n_ctx"),
         ("steps", "classify", "model", "max_tokens"), ("steps", "classify", "model", "temperature"),
         ("steps", "classify", "model", "api_base"), ("steps", "classify", "model", "gguf"),
         ("steps", "classify", "strategy"), ("steps", "classify", "strategy", "samples"),
         ("steps", "classify", "format"), ("steps", "classify", "output_schema"), ("metrics",),
         ("metrics", "validation"), ("provenance",), ("provenance", "packages"), ("provenance", "packages", "dspy"),
         ("provenance", "seed"), ("provenance", "datasets")]
HUGE = st.integers(4301, 6000)  # digits past Python's int-conversion limit
SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
TEXT = st.one_of(st.text(max_size=12), SURROGATES, st.builds(str.__add__, st.text(max_size=4), SURROGATES),
                 st.sampled_from(["", " ", "\t\n", "1.0", "2.0", "1.7", "\u0661.0", "\ufeff", "\x00",
                                  "programs.sentiment:Sentiment"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**40), 10**40), st.floats(), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=10)
FRAGMENTS = st.one_of(
    st.sampled_from(['"\\ud800"', '"x\\udfff"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"', "NaN", "-NaN", "Infinity",
                     "-Infinity", "1e400", "-1E+999", "1e-400", "-0", '{"a": 1, "a": 2}', '{"\\ud800": 1}',
                     '{"\\ud800": 1, "\\ud800": 2}', '[{"k": [], "k": {}}]', '""', '"   "', "[]", "{}", "null",
                     '"\\u0000"', '"\\ufeff1.0"', '"\\u0661.0"', '"01.0"', '"1.0 "', "1.0", "[1.0]"]),
    HUGE.map(lambda n: "9" * n),                                  # an integer literal
    HUGE.map(lambda n: "-" + "1" * n),
    HUGE.map(lambda n: "1" + "0" * n + ".5"),                     # a float literal: reads as infinity
    HUGE.map(lambda n: f'"{"1" * n}.0"'),                         # a version string
    HUGE.map(lambda n: f'"1.{"0" * n}"'),
    HUGE.map(lambda n: f'"{"0" * n}1.0"'),
    HUGE.map(lambda n: f'"{"9" * n}"'),
    st.integers(40, 3000).map(lambda d: "[" * d + "]" * d),
    st.integers(40, 3000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.tuples(VALUES, st.booleans()).map(lambda v: json.dumps(v[0], ensure_ascii=v[1])),  # raw surrogates if False
)
KEYS = st.one_of(st.sampled_from(['"format"', '"demos"', '"n_ctx"', '"ref"', '"format_version"', '"\\ud800"',
                                  '"\\udfff\\udfff"', '""', '"classify"']), TEXT.map(json.dumps))
DAMAGE = st.one_of(st.binary(max_size=4), st.sampled_from(
    [b"\xff", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\x00", b"\xef\xbb\xbf", b'"', b",", b"}", b"\\u",
     b"\\ud800", b"NaN", b"1e400", b"9" * 5000]))
CUTS = st.lists(st.tuples(st.integers(0, 10**6), DAMAGE), max_size=2)


def _settings() -> settings:
    return settings(max_examples=EXAMPLES, derandomize=SEED is None, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def _seeded(test: Callable[..., None]) -> Callable[..., None]:
    return seed(int(SEED))(test) if SEED is not None else test


def _document(path: tuple[str | int, ...], fragment: str, key: str | None, rehash: bool) -> str:
    """The fixture with ``fragment`` (raw JSON text) at ``path``, or added under ``key`` (raw JSON text) to the
    object at ``path``; its hash recomputed when ``rehash`` and the text still reads as (lenient) JSON."""
    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    doc["content_sha256"] = HASH
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if key is not None and isinstance(parent[path[-1]], dict):
        parent[path[-1]][KEY] = 0
    else:
        parent[path[-1]], key = FRAG, None
    text = json.dumps(doc, indent=1)
    text = text.replace(f"{json.dumps(KEY)}: 0", f"{key}: {fragment}") if key else text.replace(
        json.dumps(FRAG), fragment)
    digest = json.loads(FIXTURE.read_text(encoding="utf-8"))["content_sha256"]
    if rehash:
        with contextlib.suppress(ValueError, RecursionError):  # NaN, surrogates, huge numbers: not hashable
            digest = content_hash({k: v for k, v in json.loads(text).items() if k != "content_sha256"})
    return text.replace(json.dumps(HASH), json.dumps(digest))


def _damaged(raw: bytes, cuts: list[tuple[int, bytes]], bom: bool, truncate: int | None) -> bytes:
    for pos, chunk in cuts:
        at = pos % (len(raw) + 1)
        raw = raw[:at] + chunk + raw[at:]
    if truncate is not None:
        raw = raw[: truncate % (len(raw) + 1)]
    return (b"\xef\xbb\xbf" if bom else b"") + raw


class Outcomes:
    """What each fuzzed input did: ``ok``, ``error`` (an ArtifactError naming the file and a JSON path) or
    ``other`` (anything else: the first few kept with the input that raised them)."""

    def __init__(self, tmp: Path):
        from optimizer.cli import build_parser
        from optimizer.commands.artifact import validate

        self.path, self.seen, self.kinds, self.failures = tmp / "fuzzed.json", Counter[str](), Counter[str](), []
        self.policy = TrustPolicy.from_env(trust=[ROOT])
        self.parser, self.validate = build_parser(), validate

    def run(self, raw: bytes, mode: str) -> None:
        self.path.write_bytes(raw)
        try:
            if mode == "validate":
                outcome = self._cli()
            else:
                (read_artifact if mode == "read" else lambda p: load_artifact(p, trust=self.policy))(self.path)
                outcome = "ok"
        except ArtifactError as exc:
            named = exc.path == str(self.path) and bool(exc.json_path) and str(self.path) in str(exc)
            outcome = "error" if named else self._other(f"misnamed {type(exc).__name__}", str(exc), raw)
        except Exception as exc:  # noqa: BLE001 - the property under test
            outcome = self._other(type(exc).__name__, str(exc)[:300], raw)
        self.seen[outcome] += 1
        self.seen[f"{mode}:{outcome}"] += 1

    def _cli(self) -> str:
        """``progopt validate FILE``: 0 and OK, or 2 and one ``INVALID ArtifactXxx: FILE: PATH: ...`` line."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.validate(self.parser.parse_args(["validate", str(self.path), "--trust", str(ROOT)]))
        if code == 0 and out.getvalue().startswith(f"OK {self.path}"):
            return "ok"
        if code == 2 and err.getvalue().startswith("INVALID ") and f": {self.path}: " in err.getvalue():
            return "error"
        raise AssertionError(f"validate exited {code}: {err.getvalue()[:300]}")

    def _other(self, kind: str, what: str, raw: bytes) -> str:
        self.kinds[kind] += 1
        if len(self.failures) < 5:
            self.failures.append(f"{kind}: {what}\n    input: {raw[:200]!r}... ({len(raw)} bytes)")
        return "other"

    def finish(self, record_counts: Callable[..., None], loader: str) -> None:
        modes = {k: v for k, v in self.seen.items() if ":" in k}
        record_counts(kind="fuzz", loader=loader, inputs=sum(v for k, v in self.seen.items() if ":" not in k),
                      ok=self.seen["ok"], error=self.seen["error"], other=self.seen["other"], by_mode=modes,
                      other_kinds=dict(self.kinds), seed=SEED)
        assert not self.failures, "\n".join(self.failures)
        assert sum(modes.values()) >= min(EXAMPLES, 50)


MODES = st.sampled_from(["read", "read", "load", "validate"])


def test_fuzzed_documents_load_or_raise_an_artifact_error(record_counts, tmp_path) -> None:
    outcomes = Outcomes(tmp_path)

    @_settings()
    @_seeded
    @given(path=st.sampled_from(PATHS), fragment=FRAGMENTS, key=st.none() | KEYS, rehash=st.booleans(),
           cuts=st.just([]) | CUTS, bom=st.booleans(), mode=MODES)
    def run(path, fragment, key, rehash, cuts, bom, mode) -> None:
        raw = _document(path, fragment, key, rehash).encode("utf-8", "surrogatepass")
        outcomes.run(_damaged(raw, cuts, bom, None), mode)

    run()
    outcomes.finish(record_counts, "artifact: documents with hostile values and keys")


def test_fuzzed_bytes_and_splices_load_or_raise_an_artifact_error(record_counts, tmp_path) -> None:
    outcomes = Outcomes(tmp_path)
    fixture = FIXTURE.read_bytes()

    @_settings()
    @_seeded
    @given(base=st.just(fixture) | st.binary(max_size=300), splices=st.lists(st.tuples(
        st.integers(0, 10**6), FRAGMENTS.map(lambda f: f.encode("utf-8", "surrogatepass")) | DAMAGE), max_size=3),
           bom=st.booleans(), truncate=st.none() | st.integers(0, 10**6), mode=MODES)
    def run(base, splices, bom, truncate, mode) -> None:
        outcomes.run(_damaged(base, splices, bom, truncate), mode)

    run()
    outcomes.finish(record_counts, "artifact: bytes, splices and truncations")


def test_every_fuzz_placeholder_is_replaced() -> None:
    """The document builder itself: the fixture round-trips, a fragment and a key land where they are aimed."""
    assert json.loads(_document(("format_version",), '"1.0"', None, False)) == json.loads(FIXTURE.read_text())
    doc = json.loads(_document(("steps", "classify", "model"), "7", '"extra"', True))
    assert doc["steps"]["classify"]["model"]["extra"] == 7 and content_hash(doc) == doc["content_sha256"]
    assert _document(("provenance", "seed"), "NaN", None, True).count("NaN") == 1
