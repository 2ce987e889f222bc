"""More demo candidates (label-balanced draws) and retrieved demos (issue #16): the draws, the retriever,
their place in the search space and in artifacts. No model runs."""

from __future__ import annotations

from collections import Counter

import dspy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.artifact import ArtifactSecretError, load_artifact, read_artifact
from optimizer.artifact.errors import SignatureDriftError
from optimizer.artifact.signature import describe_step, step_config
from optimizer.models import GEMMA3
from optimizer.search.candidates import labeled_draws
from optimizer.search.retrieval import retrieval_candidates, retrieval_pool
from optimizer.space import SearchSpace, StepChoice, StepSpace, Variant
from optimizer.space.retrieval import RetrievalConfig, Retriever, balanced_top
from programs.news import TASK as NEWS
from programs.sentiment import TASK as SST2
from programs.sentiment import ClassifySentiment
from tests.fixtures.artifacts import rewrite, save_sentiment

FIELDS = ["sentence", "sentiment"]


@pytest.fixture(scope="module")
def train() -> list[dspy.Example]:
    return SST2.load("train")


def _labels(demos):
    return Counter(d["sentiment"] for d in demos)


def test_draws_are_distinct_label_balanced_and_keep_the_first_set(train):
    from optimizer.search.candidates import labeled_sets

    draws = labeled_draws(FIELDS, "sentiment", train, [2, 4], seed=0, draws=8)
    assert [k for k in draws if k.startswith("labeled4")] == ["labeled4"] + [f"labeled4.{j}" for j in range(1, 8)]
    assert {k: draws[k] for k in ("labeled2", "labeled4")} == labeled_sets(FIELDS, "sentiment", train, [2, 4], 0)
    fours = [v for k, v in draws.items() if k.startswith("labeled4")]
    assert all(_labels(d) == {"positive": 2, "negative": 2} for d in fours)
    assert len({tuple(d["sentence"] for d in demos) for demos in fours}) == 8
    assert len({frozenset(d["sentence"] for d in demos) for demos in fours}) > 1  # members differ, not just order


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), draws=st.integers(1, 6), k=st.integers(1, 6))
def test_draws_are_deterministic_per_seed_and_balanced(train, seed, draws, k):
    first = labeled_draws(FIELDS, "sentiment", train, [k], seed=seed, draws=draws)
    assert first == labeled_draws(FIELDS, "sentiment", train, [k], seed=seed, draws=draws)
    assert len(first) == draws
    for demos in first.values():
        counts = _labels(demos)
        low = min(counts.get(label, 0) for label in ("positive", "negative"))
        assert len(demos) == k and max(counts.values()) - low <= 1


def test_small_draws_over_many_labels_cover_other_labels():
    from programs.trec_coarse import TASK as TREC

    draws = labeled_draws(["question", "coarse"], "coarse", TREC.load("train"), [4], seed=0, draws=8)
    assert all(len({d["coarse"] for d in demos}) == 4 for demos in draws.values())
    assert len({d["coarse"] for demos in draws.values() for d in demos}) == 6  # draw 0 alone shows 4 of 6


def test_a_tiny_pool_gives_fewer_draws_instead_of_duplicates(train):
    two = [next(ex for ex in train if ex.sentiment == lab) for lab in ("positive", "negative")]
    draws = labeled_draws(FIELDS, "sentiment", two, [2], seed=0, draws=8)
    assert 1 <= len(draws) <= 2  # only two orders of the same two examples exist
    assert len({tuple(d["sentence"] for d in v) for v in draws.values()}) == len(draws)


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40),
       n_labels=st.integers(1, 6), k=st.integers(1, 10))
def test_balanced_top_balances_labels_and_returns_pool_order(scores, n_labels, k):
    labels = [f"l{i % n_labels}" for i in range(len(scores))]
    chosen = balanced_top(np.array(scores), labels, k)
    assert chosen == sorted(set(chosen)) and len(chosen) == min(k, len(scores))
    counts = Counter(labels[i] for i in chosen)
    available = Counter(labels)
    # no label gets two more than another label that still had examples left
    for a in counts:
        for b in available:
            if counts.get(b, 0) < available[b]:
                assert counts[a] <= counts.get(b, 0) + 1


def test_balanced_top_without_labels_takes_the_highest_scores_ties_by_index():
    assert balanced_top(np.array([0.1, 0.9, 0.5, 0.9]), None, 2) == [1, 3]
    assert balanced_top(np.array([0.2, 0.2, 0.2]), None, 2) == [0, 1]


def _config(k: int = 4, label: str | None = "sentiment") -> RetrievalConfig:
    pool = retrieval_pool(FIELDS, [ex.toDict() for ex in SST2.load("train")], seed=0)
    return RetrievalConfig(k=k, inputs=["sentence"], label_field=label, pool=pool)


def test_retriever_finds_the_most_similar_example_balanced_and_deterministically():
    config = _config()
    query = {"sentence": config.pool[17]["sentence"] + " indeed"}
    first = Retriever(config).select(query)
    assert 17 in first and len(first) == 4 and first == sorted(first)
    assert _labels([config.pool[i] for i in first]) == {"positive": 2, "negative": 2}
    assert Retriever(config.model_copy()).select(query) == first  # a rebuilt index retrieves the same
    unbalanced = Retriever(_config(k=3, label=None)).select(query)
    assert 17 in unbalanced and len(unbalanced) == 3


def test_retrieval_over_many_labels_gives_distinct_labels_when_k_is_small():
    pool = retrieval_pool(["text", "topic"], [ex.toDict() for ex in NEWS.load("train")], seed=0)
    retriever = Retriever(RetrievalConfig(k=3, inputs=["text"], label_field="topic", pool=pool))
    demos = retriever.demos({"text": pool[5]["text"] + " (report)"})
    assert len({d["topic"] for d in demos}) == 3 and pool[5] in demos


def test_a_pool_example_is_never_retrieved_as_its_own_demo():
    config = _config()
    for i in (0, 17, 42):  # scoring a training example retrieves from the others (leave-one-out)
        chosen = Retriever(config).select({"sentence": config.pool[i]["sentence"]})
        assert i not in chosen and len(chosen) == 4


def test_the_pool_keeps_only_the_step_fields_and_a_seeded_sample_above_the_limit():
    rows = [{"sentence": f"s{i}", "sentiment": "positive", "extra": i} for i in range(10)]
    assert retrieval_pool(FIELDS, rows, seed=0)[0] == {"sentence": "s0", "sentiment": "positive"}
    sample = retrieval_pool(FIELDS, rows, seed=1, limit=4)
    assert sample == retrieval_pool(FIELDS, rows, seed=1, limit=4) and len(sample) == 4
    assert [int(r["sentence"][1:]) for r in sample] == sorted(int(r["sentence"][1:]) for r in sample)


def test_the_space_offers_retrieval_as_a_demo_choice_and_resolves_it():
    candidates = retrieval_candidates(ClassifySentiment, "sentiment", [ex.toDict() for ex in SST2.load("train")],
                                      [4], seed=0)
    space = SearchSpace(steps={"classify": StepSpace(instructions={"original": "x"},
                                                     demo_sets={"zero": []}, retrieved=candidates)},
                        models=[GEMMA3.name])
    assert space.choices("classify")["demos"] == ["zero", "knn4"] and space.size() == 2
    variant = Variant(steps={"classify": StepChoice(instruction="original", demos="knn4", model=GEMMA3.name)})
    step = space.resolve(variant)["classify"]
    assert step.demos == [] and step.retrieval == candidates["knn4"]
    assert SearchSpace.model_validate_json(space.model_dump_json()) == space
    old = space.model_dump()
    del old["steps"]["classify"]["retrieved"]  # a space stored before retrieval existed still loads
    assert SearchSpace.model_validate(old).choices("classify")["demos"] == ["zero"]


def test_a_retrieval_step_round_trips_through_the_artifact_and_retrieves_after_load(tmp_path):
    config = _config()
    path = save_sentiment(tmp_path / "a.json", n_demos=0, retrieval=config)
    doc = read_artifact(path)
    assert doc["steps"]["classify"]["retrieval"]["k"] == 4 and len(doc["steps"]["classify"]["retrieval"]["pool"]) == 200
    assert step_config(doc["steps"]["classify"]).retrieval == config
    step = load_artifact(path).classify
    query = {"sentence": config.pool[3]["sentence"]}
    assert step.retriever.demos(query) == Retriever(config).demos(query)
    assert "retrieval" not in describe_step(ClassifySentiment, step.step_config.model_copy(update={"retrieval": None}),
                                            GEMMA3)


def test_a_retrieval_naming_a_field_the_step_lacks_is_refused_at_load(tmp_path):
    path = save_sentiment(tmp_path / "a.json", n_demos=0, retrieval=_config())

    def drift(doc):
        doc["steps"]["classify"]["retrieval"]["label_field"] = "mood"

    with pytest.raises(SignatureDriftError, match="label_field"):
        load_artifact(rewrite(path, drift))


def test_a_secret_in_the_stored_pool_is_refused_like_any_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    config = _config()
    leaked = [*config.pool[:-1], {"sentence": "key sk-test-0123456789", "sentiment": "negative"}]
    with pytest.raises(ArtifactSecretError, match="OPENAI_API_KEY") as info:
        save_sentiment(tmp_path / "a.json", n_demos=0, retrieval=config.model_copy(update={"pool": leaked}))
    assert info.value.json_path == f"steps.classify.retrieval.pool[{len(leaked) - 1}].sentence"
    assert not (tmp_path / "a.json").exists()


def test_sweep_cells_carry_the_demo_settings_and_earlier_cells_keep_their_ids():
    from pathlib import Path

    from optimizer.sweep.config import load_sweep

    _, cells = load_sweep(Path(__file__).parent.parent / "experiments" / "sweeps" / "quickstart.yaml")
    cell = next(c for c in cells if c.optimizer == "progopt")
    assert (cell.demo_draws, cell.strategies, cell.final_top, cell.retrieval_sizes) == (None, None, None, ())
    assert cell.open_space() and cell.label().endswith("+auto")  # the budget-scaled defaults (issue #37)
    fixed = type(cell).model_validate({**cell.model_dump(), "strategies": ["direct"], "demo_draws": 1,
                                       "final_top": 0, "label_words": []})
    legacy = fixed.model_dump(mode="json", exclude_defaults=True)
    for key in ("strategies", "demo_draws", "final_top", "label_words"):
        legacy.pop(key)
    import hashlib
    import json

    # the fixed space before issue #37, given explicitly, keeps the id it had when it was the default
    assert fixed.cell_id() == hashlib.sha256(json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()
                                             ).hexdigest()[:12]
    assert cell.cell_id() != fixed.cell_id()  # open settings never take an earlier cell's id
    more = fixed.model_copy(update={"demo_draws": 8, "retrieval_sizes": (4,)})
    assert more.cell_id() != fixed.cell_id()


def test_the_space_builder_adds_draws_and_retrieval_per_step_without_lm_calls(train):
    from optimizer.search.space_builder import build_space
    from programs.sentiment import Sentiment, metric

    def no_lm(name):
        raise AssertionError(f"no LM call expected ({name})")

    space = build_space(Sentiment(), train[:40], metric, models=[GEMMA3.name], lm_for=no_lm, seed=0, proposer=None,
                        teacher=None, demo_draws=3, retrieval_sizes=(2, 4))
    demos = space.choices("classify")["demos"]
    assert demos == ["zero", "labeled2", "labeled4", "labeled2.1", "labeled2.2", "labeled4.1", "labeled4.2",
                     "knn2", "knn4"]
    assert len(space.steps["classify"].retrieved["knn4"].pool) == 40
    legacy = build_space(Sentiment(), train[:40], metric, models=[GEMMA3.name], lm_for=no_lm, seed=0, proposer=None,
                         teacher=None)
    assert legacy.choices("classify")["demos"] == ["zero", "labeled2", "labeled4"]


def test_the_compile_command_defaults_its_demo_options_to_the_space_settings():
    from optimizer.cli import build_parser
    from optimizer.search.settings import SpaceSettings

    def options(*extra):
        args = build_parser().parse_args(["compile", "programs/sentiment.py:Sentiment", *extra])
        return args.demo_draws, tuple(args.retrieved_demos)

    assert options() == (SpaceSettings().demo_draws, SpaceSettings().retrieval_sizes)
    assert options("--demo-draws", "8", "--retrieved-demos", "2", "4") == (8, (2, 4))
    assert options("--retrieved-demos") == (SpaceSettings().demo_draws, ())


def test_a_step_with_more_labels_than_the_largest_demo_size_gets_a_set_with_one_demo_per_label():
    from optimizer.search.candidates import covering_sizes
    from optimizer.search.space_builder import build_space
    from programs.trec_coarse import CoarseQuestionClassifier, metric

    labels = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    train = [dspy.Example(question=f"question {i}?", coarse=labels[i % 6]).with_inputs("question") for i in range(30)]

    def no_lm(name):
        raise AssertionError(f"no LM call expected ({name})")

    space = build_space(CoarseQuestionClassifier(), train, metric, models=[GEMMA3.name], lm_for=no_lm, seed=0,
                        proposer=None, teacher=None, demo_draws=2)
    assert space.choices("classify")["demos"] == ["zero", "labeled2", "labeled4", "labeled6", "labeled2.1",
                                                  "labeled4.1", "labeled6.1"]
    for name in ("labeled6", "labeled6.1"):
        assert sorted(d["coarse"] for d in space.steps["classify"].demo_sets[name]) == labels
    assert covering_sizes((2, 4), 2) == [2, 4]  # SST-2: 2 demos already show both labels
    assert covering_sizes((2, 4), 50) == [2, 4]  # TREC fine: one per label would be a 50-demo prompt
