"""The "chat" format: DSPy's ChatAdapter prompt with its reply constrained on local models, so it parses on
the first call (no JSON fallback call) for every supported output type."""

import re

import pytest

from optimizer.adapters import ChatFormatAdapter
from optimizer.adapters.chat import reply_regex
from optimizer.evaluate import evaluate
from optimizer.space.build import build_program, make_adapter
from optimizer.space.variant import StepConfig
from programs.sentiment import TASK as SST2
from programs.sentiment import ClassifySentiment, Sentiment, metric
from tests.test_compact_adapter import MODELS, ROUND_TRIP, round_trip


def test_reply_regex_accepts_chat_adapter_replies_and_nothing_else():
    pattern = re.compile(reply_regex(ClassifySentiment))
    assert pattern.fullmatch("[[ ## sentiment ## ]]\npositive\n\n[[ ## completed ## ]]")
    assert not pattern.fullmatch("[[ ## sentiment ## ]]\nneutral\n\n[[ ## completed ## ]]")
    assert not pattern.fullmatch('{"sentiment": "positive"}')
    assert isinstance(make_adapter("chat"), ChatFormatAdapter)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_sentiment_in_chat_format_parses_on_the_first_call(pool, model):
    step = StepConfig(instruction=ClassifySentiment.instructions, model=model, format="chat")
    ev = evaluate(build_program(Sentiment(), {"classify": step}, pool.lm), SST2.load("test", limit=10), metric,
                  show_progress=False)
    assert ev.summary().validity_rate == 1.0
    assert ev.summary().lm_calls == 10  # one call per example: no JSON fallback
    assert all(c.text.startswith("[[ ## sentiment ## ]]") for c in ev.calls)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("annotation", "demos", "python_type"), ROUND_TRIP,
                         ids=["str", "int", "float", "bool", "literal", "list", "model", "optional"])
@pytest.mark.slow
def test_every_output_type_round_trips_in_chat_format(pool, model, annotation, demos, python_type):
    round_trip(pool.lm(model), ChatFormatAdapter(), annotation, demos, python_type)
