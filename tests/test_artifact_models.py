"""Artifacts on the real local models: a saved program, loaded in a fresh process with its own DSPy cache,
gives the same outputs from the same prompts; the committed v1 fixture still loads and runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dspy
import pytest

from optimizer.artifact import load_artifact, read_artifact, save_artifact
from optimizer.commands.artifact import prediction_json
from optimizer.models import GEMMA3, SMOLLM2
from optimizer.space import StepConfig, build_program
from programs.sentiment import TASK as SST2
from programs.sentiment import Sentiment
from programs.trec import TASK as TREC
from programs.trec import QuestionClassifier
from tests.fixtures.artifacts import INSTRUCTION, sentiment_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "compiled-program.v1.json"

# Runs in a fresh interpreter: load the artifact, run the inputs, dump outputs and every LM call's messages.
FRESH_PROCESS = """
import json, sys
from optimizer import runtime
from optimizer.artifact import load_artifact
from optimizer.commands.artifact import prediction_json

artifact, inputs, out, cache = sys.argv[1:]
runtime.configure(cache)
program = load_artifact(artifact)
lms = {p.lm.model: p.lm for _, p in program.named_predictors()}
outputs = [prediction_json(program(**row)) for row in json.load(open(inputs))]
calls = {name: [{"messages": h["messages"], "usage": h["usage"]} for h in lm.history] for name, lm in lms.items()}
json.dump({"outputs": outputs, "calls": calls}, open(out, "w"))
"""


def run_here(program: dspy.Module, rows: list[dict[str, Any]]) -> dict[str, Any]:
    lms = {p.lm.model: p.lm for _, p in program.named_predictors()}
    start = {name: len(lm.history) for name, lm in lms.items()}
    outputs = [prediction_json(program(**row)) for row in rows]
    calls = {name: [{"messages": h["messages"]} for h in lm.history[start[name]:]] for name, lm in lms.items()}
    return json.loads(json.dumps({"outputs": outputs, "calls": calls}))


def run_in_fresh_process(artifact: Path, rows: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    inputs, out = tmp_path / "inputs.json", tmp_path / "fresh.json"
    inputs.write_text(json.dumps(rows), encoding="utf-8")
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(artifact), str(inputs), str(out),
                    str(tmp_path / "fresh-cache")], cwd=ROOT, check=True, timeout=1800)
    return json.loads(out.read_text(encoding="utf-8"))


def assert_same_run(here: dict[str, Any], fresh: dict[str, Any], calls_per_model: dict[str, int]) -> None:
    assert fresh["outputs"] == here["outputs"]
    for model, n in calls_per_model.items():
        assert len(fresh["calls"][model]) == len(here["calls"][model]) == n
        assert all(call["usage"] for call in fresh["calls"][model]), "the fresh process must really call the model"
        assert [c["messages"] for c in fresh["calls"][model]] == [c["messages"] for c in here["calls"][model]]


def test_sentiment_round_trip_in_a_fresh_process_same_outputs_same_prompts(tmp_path, pool):
    # compact format: under the JSON prompt Gemma answers "positive" to all 50, and equal outputs would prove little
    config = sentiment_config(4, model=GEMMA3.name, format="compact")
    examples = SST2.load("test", limit=50)
    rows = [{"sentence": ex.sentence} for ex in examples]
    here = run_here(build_program(Sentiment(), {"classify": config}, pool.lm), rows)
    artifact = save_artifact(tmp_path / "sentiment.json", program_ref="programs/sentiment.py:Sentiment",
                             program=Sentiment(), steps={"classify": config}, models={GEMMA3.name: GEMMA3},
                             metrics={}, provenance={"seed": 0})
    fresh = run_in_fresh_process(artifact, rows, tmp_path)
    assert_same_run(here, fresh, {GEMMA3.name: 50})
    prompt = json.dumps(fresh["calls"][GEMMA3.name][0]["messages"])
    assert INSTRUCTION in prompt and all(json.dumps(d["sentence"])[1:-1] in prompt for d in config.demos)
    labels = [o["sentiment"] for o in fresh["outputs"]]
    assert set(labels) == {"negative", "positive"}, "a constant classifier would make equal outputs meaningless"
    correct = sum(label == ex.sentiment for label, ex in zip(labels, examples, strict=True))
    print(f"sentiment round trip: accuracy {correct}/50, {labels.count('positive')} positive")


def test_two_step_program_on_two_models_round_trips_in_a_fresh_process(tmp_path, pool):
    train = [dict(r.items()) for r in TREC.load("train", limit=5)]
    steps = {
        "coarse_step": StepConfig(instruction="Which kind of answer does the question ask for?", model=SMOLLM2.name,
                                  demos=[{k: r[k] for k in ("question", "coarse")} for r in train[:2]]),
        "fine_step": StepConfig(instruction="Give the fine answer type, within the coarse type.", model=GEMMA3.name,
                                demos=train[2:5], format="compact"),
    }
    rows = [{"question": ex.question} for ex in TREC.load("test", limit=5)]
    here = run_here(build_program(QuestionClassifier(), steps, pool.lm), rows)
    artifact = save_artifact(tmp_path / "trec.json", program_ref="programs/trec.py:QuestionClassifier",
                             program=QuestionClassifier(), steps=steps,
                             models={SMOLLM2.name: SMOLLM2, GEMMA3.name: GEMMA3}, metrics={}, provenance={})
    assert {s["model"]["name"] for s in read_artifact(artifact)["steps"].values()} == {SMOLLM2.name, GEMMA3.name}
    fresh = run_in_fresh_process(artifact, rows, tmp_path)
    assert_same_run(here, fresh, {SMOLLM2.name: 5, GEMMA3.name: 5})
    print("trec round trip:", [f"{o['coarse']}/{o['fine']}" for o in fresh["outputs"]])


def test_committed_v1_fixture_loads_and_runs():
    doc = read_artifact(FIXTURE)
    assert doc["format_version"] == "1.0"
    program = load_artifact(FIXTURE)
    assert program.classify.step_config.model == SMOLLM2.name and len(program.classify.demos) == 2
    outputs = [program(sentence=ex.sentence).sentiment for ex in SST2.load("test", limit=3)]
    assert len(outputs) == 3 and set(outputs) <= {"negative", "positive"}

