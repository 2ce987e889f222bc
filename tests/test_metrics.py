import dspy
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimizer.metrics import entity_f1, entity_f1_mean, exact_match
from optimizer.statistics import mean_score_ci, micro_f1, paired_difference, score_ci


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


def _sentences():
    """Four sentences: two with entities, two without."""
    gold = [dspy.Example(entities=[{"text": "Japan", "type": "LOC"}, {"text": "Sony", "type": "ORG"}]),
            dspy.Example(entities=[{"text": "Ann", "type": "PER"}]),
            dspy.Example(entities=[]), dspy.Example(entities=[])]
    return gold


def test_entity_f1_is_micro_f1_over_the_slice_and_extracting_nothing_scores_zero():
    metric = entity_f1()
    gold = _sentences()
    nothing = [metric.statistics(ex, dspy.Prediction(entities=[])) for ex in gold]
    assert metric.aggregate(np.asarray(nothing)) == 0.0
    # per sentence, the old mean gave the extract-nothing program half marks here
    assert np.mean([entity_f1_mean()(ex, dspy.Prediction(entities=[])) for ex in gold]) == 0.5
    preds = [dspy.Prediction(entities=[{"text": "japan", "type": "loc"}]),  # 1 tp, 1 fn
             dspy.Prediction(entities=[{"text": "Ann", "type": "ORG"}]),  # 1 fp, 1 fn
             dspy.Prediction(entities=[{"text": "x", "type": "PER"}]),  # 1 fp
             dspy.Prediction(entities=[])]
    rows = np.asarray([metric.statistics(ex, p) for ex, p in zip(gold, preds, strict=True)])
    assert rows.sum(axis=0).tolist() == [1, 2, 2]
    assert metric.aggregate(rows) == pytest.approx(2 * 1 / (2 + 2 + 2))  # P = 1/3, R = 1/3
    # DSPy's per-example float is unchanged: that sentence's own F1
    assert metric(gold[0], preds[0]) == pytest.approx(2 / 3)


def test_evaluation_scores_and_bootstraps_the_corpus_aggregate():
    from optimizer.evaluate import Evaluation, ExampleResult

    metric = entity_f1()
    gold = _sentences() * 5
    preds = [dspy.Prediction(entities=ex.entities[:1]) for ex in gold]
    results = [ExampleResult(i, metric(ex, p), True, {}, [], row=list(metric.statistics(ex, p)))
               for i, (ex, p) in enumerate(zip(gold, preds, strict=True))]
    ev = Evaluation(results, aggregate=metric.aggregate, aggregate_name="micro_f1")
    summary = ev.summary()
    assert summary.score == pytest.approx(2 * 2 / (2 * 2 + 1))  # 2 of 3 entities per 4 sentences, no fp
    low, high = summary.score_ci
    assert low <= summary.score <= high and low < high
    assert summary.aggregate == "micro_f1" and len(summary.rows) == 20


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), min_size=2, max_size=30))
def test_a_variant_paired_with_itself_differs_by_exactly_zero(rows):
    diff, (low, high) = paired_difference(rows, rows, micro_f1)
    assert diff == low == high == 0.0


@given(st.lists(st.floats(0, 1), min_size=2, max_size=40), st.floats(0.01, 0.5))
def test_a_uniform_shift_has_a_zero_width_paired_ci(scores, shift):
    a = [[s + shift] for s in scores]
    b = [[s] for s in scores]
    diff, (low, high) = paired_difference(a, b)
    assert diff == pytest.approx(shift) and low == pytest.approx(shift) and high == pytest.approx(shift)


def test_a_paired_ci_is_narrower_than_the_marginal_ones_when_variants_miss_the_same_examples():
    rng = np.random.default_rng(1)
    hard = rng.random(100) < 0.3
    a = [[float(not h)] for h in hard]
    b = [[float(not h and i % 10 != 0)] for i, h in enumerate(hard)]  # b also misses every tenth example
    diff, (low, high) = paired_difference(a, b)
    la, ha = score_ci(a)
    assert diff > 0 and low > 0  # the paired CI excludes 0
    assert high - low < ha - la
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(a, b[:-1])


def test_the_mean_over_seeds_resamples_examples_once_for_every_seed():
    runs = [[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]] * 10, [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]] * 10]
    low, high = mean_score_ci(runs, micro_f1)
    mean = np.mean([micro_f1(np.asarray(run)) for run in runs])
    assert 0.0 <= low <= mean <= high <= 1.0 and low < high
    with pytest.raises(ValueError, match="different examples"):
        mean_score_ci([runs[0], runs[1][:-1]], micro_f1)
