"""What a compile produces: one :class:`TrialRecord` per evaluated variant, and the :class:`CompileResult`.

Plain pydantic values at the bottom of the compile path (they import only value modules): the tracker
turns them into MLflow runs, :func:`optimizer.artifact.save_result` into the JSON artifact, the report
into tables and plots. Nothing here runs a model."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from optimizer.models.spec import ModelSpec
from optimizer.space.variant import SearchSpace, StepConfig, Variant
from optimizer.summary import Summary

# minibatch: a trial's screening; full: the validation split; final: validation plus held-out training
# examples (the final selection's re-scoring of the top variants); test: the report after the compile.
Stage = Literal["baseline", "minibatch", "full", "final", "test"]


class TrialRecord(BaseModel):
    """One evaluation of one variant on one data slice.

    ``summary`` is :meth:`optimizer.evaluate.Evaluation.summary` on that slice."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(description="Optuna trial number; baselines and test evaluations use -1")
    variant_key: str
    variant: Variant
    steps: dict[str, StepConfig]
    stage: Stage
    examples: int
    summary: Summary
    label: str | None = Field(None, description="e.g. 'baseline local/smollm2-135m'")


class CompileResult(BaseModel):
    """Every evaluated variant, the quality-vs-cost Pareto front and the chosen variant."""

    model_config = ConfigDict(extra="forbid")

    program: str = Field(description="program reference, 'path/file.py:Class' or 'module:Class'")
    program_hash: str
    seed: int
    budget: dict[str, float | None]
    spent: dict[str, float] = Field(description="calls, paid calls, cost and seconds the compile used")
    space: SearchSpace
    datasets: dict[str, str] = Field(description="split name -> dataset hash")
    trials: list[TrialRecord]
    baselines: list[TrialRecord]
    front: list[str] = Field(description="variant keys on the validation Pareto front (quality vs cost)")
    chosen: str = Field(description="variant key chosen under the user's preference")
    test: list[TrialRecord] = Field(default_factory=list, description="front + baselines on the test split")
    tracking_run_id: str | None = None
    models: dict[str, ModelSpec] = Field(default_factory=dict, description="the searched pool, by model name")
    space_note: str = Field("", description="the space's size and what was filled for the budget, and why")
    choice_note: str = Field("", description="the chosen variant's estimate (score, CI, stage) and its ties")

    def best_full(self) -> dict[str, TrialRecord]:
        """The best full-validation record of each variant that has one (highest score; ties: the latest)."""
        best: dict[str, TrialRecord] = {}
        for t in self.trials:
            held = best.get(t.variant_key)
            if t.stage == "full" and (held is None or t.summary.score >= held.summary.score):
                best[t.variant_key] = t
        return best

    def finals(self) -> dict[str, TrialRecord]:
        """The final-selection record of each variant it re-scored (validation plus held-out examples)."""
        return {t.variant_key: t for t in self.trials if t.stage == "final"}

    def best_records(self) -> dict[str, TrialRecord]:
        """Each variant's most complete record: its final-selection one, else its full-validation one, else
        its latest minibatch one (a compile whose budget ran out before any promotion has a front of
        minibatch records)."""
        return {**{t.variant_key: t for t in self.trials if t.stage == "minibatch"}, **self.best_full(),
                **self.finals()}

    def chosen_steps(self) -> dict[str, StepConfig]:
        return next(t.steps for t in [*self.trials, *self.baselines] if t.variant_key == self.chosen)


class CompileObserver(Protocol):
    """Receives a compile's records as they happen (the MLflow tracker is one). ``start`` returns a run
    id to record in the result, or None; a resumed compile calls ``start`` with the same study name."""

    def start(self, *, study_name: str, program: str, seed: int, budget: dict[str, Any],
              datasets: dict[str, str]) -> str | None: ...

    def log_trial(self, record: TrialRecord) -> None: ...

    def finish(self, result: CompileResult) -> None: ...

    def fail(self, error: BaseException) -> None: ...
