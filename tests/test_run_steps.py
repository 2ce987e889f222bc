"""A built program runs each step's LM calls in that step (wherever it runs: an evaluation or
``progopt run``), so a local model gets one llama.cpp instance per step (the step is the instance's KV slot)."""

import dspy
import pytest
from dspy.lm15 import Request

from optimizer.accounting import current_step
from optimizer.models import ModelPool
from optimizer.models.base import Engine, Generation
from optimizer.space.build import baseline_steps, build_program


class Chain(dspy.Module):
    def __init__(self):
        super().__init__()
        self.first = dspy.Predict("question -> draft")
        self.second = dspy.Predict("draft -> answer")

    def forward(self, question):
        return self.second(draft=self.first(question=question).draft)


class StepRecorder(Engine):
    """Records the step each call ran in (what local.load keys its instance on) and answers that step's field."""

    steps: list[str | None] = []

    def generate(self, request: Request) -> Generation:
        step = current_step()
        StepRecorder.steps.append(step)
        return Generation(f'{{"{"draft" if step == "first" else "answer"}": "x"}}', "stop", 1, 1, 0.0)


def test_a_two_step_program_run_directly_calls_each_step_in_its_own_slot():
    StepRecorder.steps = []
    pool = ModelPool([ModelPool.default()["local/smollm2-135m"]], engine_for=StepRecorder)
    program = build_program(Chain(), baseline_steps(Chain(), "local/smollm2-135m"), pool.lm)
    assert program(question="q?").answer == "x"  # as `progopt run` calls it: no evaluation, no ledger
    assert StepRecorder.steps == ["first", "second"]
    assert current_step() is None


@pytest.mark.slow
def test_a_two_step_program_on_one_local_model_loads_one_llama_instance_per_step():
    from optimizer.models import local

    model = "local/smollm2-135m"
    program = build_program(Chain(), baseline_steps(Chain(), model, "compact"), ModelPool.from_names([model]).lm)
    program(question="What is the capital of France?")  # as `progopt run` calls a loaded artifact's program
    slots = {key[3] for key in local._LOADED if key[0].endswith(".gguf") and "smollm" in key[0].lower()}
    assert {"first", "second"} <= slots
