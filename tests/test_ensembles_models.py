"""An ensemble on the real local models: two label-scoring members on different models and label words,
100% valid with declared labels; its saved artifact loads under the trust rules and `progopt run` agrees."""

from __future__ import annotations

import json

import pytest

from optimizer.artifact import save_artifact
from optimizer.cli import build_parser
from optimizer.evaluate import evaluate
from optimizer.models import GEMMA3, SMOLLM2
from optimizer.search.calibrate import calibrate_steps
from optimizer.space.build import build_program
from optimizer.space.variant import StepConfig, strategy_settings
from programs.sentiment import TASK, Sentiment, metric
from tests.fixtures.artifacts import SUMMARY, balanced_demos

pytestmark = pytest.mark.slow  # runs the local models


def test_an_ensemble_of_two_models_runs_valid_and_progopt_run_agrees(pool, tmp_path, capsys):
    program = Sentiment()
    instruction = program.classify.signature.instructions
    members = [StepConfig(instruction=instruction, model=GEMMA3.name, format="compact", demos=balanced_demos(2),
                          **strategy_settings("score-bc")),
               StepConfig(instruction=instruction, model=SMOLLM2.name, format="compact",
                          verbalizer={"sentiment": {"negative": "bad", "positive": "good"}},
                          **strategy_settings("score-bc"))]
    config = members[0].model_copy(update={"strategy": "ensemble", "members": members, "calibration": "none"})
    config = calibrate_steps(program, {"classify": config}, TASK.load("train", limit=40), pool.lm)["classify"]
    assert all(m.prior for m in config.members)
    test = TASK.load("test", limit=3)
    ev = evaluate(build_program(program, {"classify": config}, pool.lm), test, metric, show_progress=False)
    assert ev.summary().validity_rate == 1.0 and ev.summary().lm_calls == 2 * len(test)  # one call per member
    path = save_artifact(tmp_path / "e.json", program_ref="programs/sentiment.py:Sentiment", program=Sentiment(),
                         steps={"classify": config}, models={GEMMA3.name: GEMMA3, SMOLLM2.name: SMOLLM2},
                         metrics={"validation": SUMMARY}, provenance={})
    for ex, result in zip(test, ev.results, strict=True):
        args = build_parser().parse_args(["run", str(path), "--input", json.dumps({"sentence": ex.sentence})])
        assert args.func(args) == 0
        assert json.loads(capsys.readouterr().out)["sentiment"] == result.prediction["sentiment"]
