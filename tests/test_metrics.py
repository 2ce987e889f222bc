import dspy
import pytest

from optimizer.metrics import entity_f1, exact_match


def test_exact_match_is_case_and_space_insensitive():
    metric = exact_match("label")
    assert metric(dspy.Example(label="Positive"), dspy.Prediction(label=" positive")) == 1.0
    assert metric(dspy.Example(label="positive"), dspy.Prediction(label="negative")) == 0.0


def test_missing_gold_label_raises_instead_of_matching():
    with pytest.raises(KeyError, match="label"):
        exact_match("label")(dspy.Example(text="x"), dspy.Prediction(label=None))


def test_entity_f1_scores_text_and_type_pairs():
    gold = dspy.Example(entities=[{"text": "Japan", "type": "LOC"}, {"text": "China", "type": "LOC"}])
    pred = dspy.Prediction(entities=[{"text": "Japan", "type": "LOC"}, {"text": "China", "type": "PER"}])
    assert entity_f1()(gold, pred) == pytest.approx(0.5)
    assert entity_f1()(dspy.Example(entities=[]), dspy.Prediction(entities=[])) == 1.0
    assert entity_f1()(gold, dspy.Prediction(entities=[])) == 0.0
