"""Real local models: constrained outputs always parse, and the constraint is really active."""

from typing import Literal

import dspy
import pytest

from optimizer.evaluate import evaluate
from optimizer.models.constrain import LIST_MAX_ITEMS
from programs.entities import TASK as CONLL
from programs.entities import EntityExtractor
from programs.entities import metric as entity_metric
from programs.sentiment import TASK as SST2
from programs.sentiment import Sentiment, metric

pytestmark = pytest.mark.slow  # runs the local models

MODELS = ["local/smollm2-135m", "local/gemma3-270m"]
MADE_UP = ("zebra-7", "quokka-3")


class MadeUpLabels(dspy.Signature):
    """Classify the sentiment of a movie review sentence."""

    sentence: str = dspy.InputField()
    sentiment: Literal["zebra-7", "quokka-3"] = dspy.OutputField()


@pytest.mark.parametrize("model", MODELS)
def test_50_sst2_sentences_give_100_percent_valid_labels(pool, model):
    ev = evaluate(Sentiment(), SST2.load("test", limit=50), metric, lm=pool.lm(model), show_progress=False)
    assert ev.summary().validity_rate == 1.0
    assert all(r.prediction["sentiment"] in {"negative", "positive"} for r in ev.results)


@pytest.mark.parametrize("model", MODELS)
def test_constraint_is_active_with_labels_no_model_writes_unconstrained(pool, model):
    rows = SST2.load("test", limit=10)
    lm = pool.lm(model)
    unconstrained = [lm(f"Sentiment of: {r.sentence}\nAnswer:", max_tokens=12)[0] for r in rows]
    assert not any(label in text for text in unconstrained for label in MADE_UP)
    predict = dspy.Predict(MadeUpLabels)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        outputs = [predict(sentence=r.sentence).sentiment for r in rows]
    assert set(outputs) <= set(MADE_UP) and len(outputs) == 10


@pytest.mark.parametrize("model", MODELS)
def test_entity_program_parses_or_records_truncation_and_never_raises(pool, model):
    ev = evaluate(EntityExtractor(), CONLL.load("test", limit=20), entity_metric, lm=pool.lm(model),
                  show_progress=False)
    assert len(ev.results) == 20
    for r in ev.results:
        if r.valid:  # a list is bounded in the json format too (models/constrain.py)
            assert isinstance(r.prediction["entities"], list) and len(r.prediction["entities"]) <= LIST_MAX_ITEMS
        else:
            assert r.error_type == "TruncatedOutput", r.error
            truncated = [c for c in r.calls if c.finish_reason == "length"]
            assert truncated and truncated[0].text
    assert ev.summary().truncations == sum(not r.valid for r in ev.results)
