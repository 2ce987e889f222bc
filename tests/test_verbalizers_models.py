"""Label words on the real local models: automatic words are found from the training data and fit the step;
a verbalized step answers with its declared labels, 100% valid, directly and with calibrated label scoring; and
`progopt run` on a saved artifact with words returns what the evaluation predicted."""

from __future__ import annotations

import json
import typing

import pytest

from optimizer.artifact import save_artifact
from optimizer.cli import build_parser
from optimizer.evaluate import evaluate
from optimizer.models import GEMMA3
from optimizer.search.calibrate import calibrate_steps
from optimizer.search.label_words import auto_words
from optimizer.space.build import build_program
from optimizer.space.variant import StepConfig, strategy_settings
from optimizer.verbalizers import check, from_signature
from programs.trec import Coarse
from programs.trec_coarse import TASK, CoarseQuestionClassifier, metric
from tests.fixtures.artifacts import SUMMARY

pytestmark = pytest.mark.slow  # runs the local models

REF = "programs/trec_coarse.py:CoarseQuestionClassifier"


def test_automatic_words_come_from_the_training_inputs_and_fit_the_step(pool):
    """Each word is the label's own text (when it is a word) or a word of the training questions."""
    train = TASK.load("train", limit=120)
    signature = CoarseQuestionClassifier().classify.signature
    found = auto_words(signature, train, [pool.lm(GEMMA3.name)], seed=0)
    assert found is not None and set(found["coarse"]) == set(typing.get_args(Coarse))
    check(signature, found)
    text = " ".join(ex.question.lower() for ex in train)
    assert all(word in text or word == label.lower() for label, word in found["coarse"].items()), found


@pytest.mark.parametrize("strategy", ["direct", "score-bc"])
def test_a_verbalized_step_answers_with_labels_and_progopt_run_agrees(pool, tmp_path, capsys, strategy):
    program = CoarseQuestionClassifier()
    signature = program.classify.signature
    config = StepConfig(instruction=signature.instructions, model=GEMMA3.name, format="compact",
                        verbalizer=from_signature(signature), **strategy_settings(strategy))
    config = calibrate_steps(program, {"classify": config}, TASK.load("train", limit=40), pool.lm)["classify"]
    test = TASK.load("test", limit=4)
    ev = evaluate(build_program(program, {"classify": config}, pool.lm), test, metric, show_progress=False)
    assert ev.summary().validity_rate == 1.0, [r.error for r in ev.results]
    predicted = [r.prediction["coarse"] for r in ev.results]
    assert set(predicted) <= set(typing.get_args(Coarse))

    path = save_artifact(tmp_path / "a.json", program_ref=REF, program=CoarseQuestionClassifier(),
                         steps={"classify": config}, models={GEMMA3.name: GEMMA3}, metrics={"validation": SUMMARY},
                         provenance={})
    assert json.loads(path.read_text())["steps"]["classify"]["verbalizer"]["coarse"]["LOC"] == "location"
    for ex, expected in zip(test, predicted, strict=True):
        args = build_parser().parse_args(["run", str(path), "--input", json.dumps({"question": ex.question})])
        assert args.func(args) == 0
        assert json.loads(capsys.readouterr().out)["coarse"] == expected
