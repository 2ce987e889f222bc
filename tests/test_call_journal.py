"""The call journal replays a job's paid model outputs on a rerun (a fresh process or a fresh clone), counts
them as calls, and survives a kill mid-line; with the real local model in tests/sweep/test_dspy_cells.py."""

from __future__ import annotations

from dspy.lm15 import Message, Request
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.accounting import EngineMeter, metered
from optimizer.models.base import Engine, Generation
from optimizer.models.journal import CallJournal, JournalEngine
from optimizer.models.spec import EMBEDDED_SPECS

SPEC = EMBEDDED_SPECS["local/smollm2-135m"]


class _Counting(Engine):
    """Answers ``reply:<prompt>`` and counts the calls that reach it."""

    def __init__(self) -> None:
        super().__init__(SPEC)
        self.generated = 0

    def generate(self, request: Request) -> Generation:
        self.generated += 1
        return Generation(f"reply:{request.messages[0].text}", "stop", 7, 3, 0.25)


def _request(text: str) -> Request:
    return Request(model=SPEC.name, messages=(Message.user(text),))


def test_a_rerun_replays_recorded_outputs_counts_them_and_pays_only_for_new_ones(tmp_path):
    path = tmp_path / "calls.jsonl"
    first = JournalEngine(_Counting(), CallJournal(path))
    assert [first.complete(_request(t)).message.text for t in ("a", "b")] == ["reply:a", "reply:b"]

    inner = _Counting()
    rerun = JournalEngine(inner, CallJournal(path))
    with metered(EngineMeter()) as meter:
        responses = [rerun.complete(_request(t)) for t in ("a", "b", "c")]
    assert [r.message.text for r in responses] == ["reply:a", "reply:b", "reply:c"]
    assert inner.generated == 1 and meter.calls == 3  # a and b replayed, still counted as the compile's calls
    assert responses[0].provider_data["latency_s"] == 0.25 and responses[0].usage.output_tokens == 3
    assert len(CallJournal(path).entries) == 3


def test_a_line_torn_by_a_kill_is_skipped_and_the_rest_replays(tmp_path):
    path = tmp_path / "calls.jsonl"
    JournalEngine(_Counting(), CallJournal(path)).complete(_request("a"))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"digest": "12ab", "text": "par')
    journal = CallJournal(path)
    assert journal.skipped == 1 and len(journal.entries) == 1
    inner = _Counting()
    JournalEngine(inner, journal).complete(_request("a"))
    JournalEngine(inner, journal).complete(_request("b"))  # appended after the torn line, not onto it
    assert inner.generated == 1
    reread = CallJournal(path)
    assert reread.skipped == 1 and set(reread.entries) == set(journal.entries) and len(reread.entries) == 2


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_any_output_text_comes_back_as_it_was(tmp_path_factory, prompt):
    path = tmp_path_factory.mktemp("journal") / "calls.jsonl"
    written = JournalEngine(_Counting(), CallJournal(path)).complete(_request(prompt)).message.text
    inner = _Counting()
    assert JournalEngine(inner, CallJournal(path)).complete(_request(prompt)).message.text == written
    assert inner.generated == 0
