"""Turn resolved step configs into a runnable copy of a program. The input program is never mutated.

Each configured step is a :class:`ConfiguredPredict`: a ``dspy.Predict`` with its own instruction,
demos, LM, prompt format (adapter) and decoding strategy, at the same attribute path as the original,
so ``named_predictors()`` names are unchanged. The ``score`` strategy scores every label with the
format's scorer (:func:`optimizer.adapters.scoring.scorer_for`) and picks the calibrated argmax."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import dspy
import numpy as np

from optimizer.accounting import in_step, raise_stopping
from optimizer.adapters import make_adapter
from optimizer.adapters.scoring import label_set, scorer_for
from optimizer.evaluate import report_confidence
from optimizer.models.base import capabilities_of
from optimizer.space.calibration import calibrate, choose, distribution
from optimizer.space.retrieval import Retriever
from optimizer.space.variant import StepConfig
from optimizer.spans import SPAN_METADATA_KEY, span_metadata
from optimizer.verbalizers import to_labels, to_words, verbalize_signature

REASONING_FIELD = "reasoning"
REASONING_DESC = "Think step by step, briefly, before giving the answer."


def _vote_key(pred: dspy.Prediction, fields: list[str]) -> str:
    return json.dumps({f: pred.get(f) for f in fields}, sort_keys=True, default=str)


class ConfiguredPredict(dspy.Predict):
    """A predictor bound to one :class:`StepConfig`. Self-consistency draws ``samples`` seeded samples
    at ``temperature`` (each a separate, separately cached call) and returns the majority answer. With
    ``config.retrieval``, each call's demos are retrieved for its inputs (the index is built here, once).
    Label scoring makes one scoring call and returns the label with the highest calibrated probability
    (the config's ``prior``; none: uncalibrated), reporting that probability as the confidence.
    A ``verbalizer`` (label words) changes what the prompt shows, generates and scores; predictions are
    mapped back to the declared labels (:mod:`optimizer.verbalizers`). ``step`` (its name in the program) is
    the step its calls run in, wherever the program runs (an evaluation, ``progopt run``): each step of a
    program on a local model gets its own llama.cpp instance."""

    def __init__(self, signature: Any, config: StepConfig, lm: dspy.LM, step: str | None = None,
                 members: tuple[ConfiguredPredict, ...] = ()):
        self.declared = signature  # the step's own signature: what predictions are mapped back to
        if config.verbalizer:
            signature = verbalize_signature(signature, config.verbalizer)
        if config.strategy == "cot":
            signature = signature.prepend(REASONING_FIELD, dspy.OutputField(desc=REASONING_DESC), type_=str)
        super().__init__(signature.with_instructions(config.instruction))
        self.step_config = config
        self.lm = lm
        self.demos = [self._example(d) for d in config.demos]
        self.adapter = make_adapter(config.format)
        self.step = step
        self.retriever = Retriever(config.retrieval) if config.retrieval else None
        self.members = members  # ensemble: one predictor per member config (in a tuple, not a program step)

    def _example(self, demo: dict[str, Any]) -> dspy.Example:
        """A demo as the prompt shows it: labels as the step's label words, when it has a verbalizer."""
        words = self.step_config.verbalizer
        return dspy.Example(**(to_words(self.declared, words, demo) if words else demo))

    def scored(self, **kwargs: Any) -> tuple[Any, list[float], dict[str, Any]]:
        """One scoring call: the step's label set, each label's summed log-prob, and the inputs used."""
        lm, _, signature, demos, inputs = self._forward_preprocess(**kwargs)
        scorer = scorer_for(self.step_config.format)
        labels, logprobs = scorer(lm, signature, demos, inputs)
        return labels, logprobs, inputs

    def _with_spans(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's kwargs with the step's span rules and this input's text in its request metadata, on a
        model that decodes under a regex (a local one); unchanged otherwise (:mod:`optimizer.spans`)."""
        lm = kwargs.get("lm") or self.lm or dspy.settings.lm
        if not self.step_config.spans or not capabilities_of(lm).regex:
            return kwargs
        config = dict(kwargs.get("config") or {})
        config["metadata"] = {**(config.get("metadata") or {}),
                              SPAN_METADATA_KEY: span_metadata(self.step_config.spans, kwargs)}
        return {**kwargs, "config": config}

    def forward(self, **kwargs: Any) -> dspy.Prediction:
        prediction = self._forward(**kwargs)
        if self.step_config.verbalizer:
            to_labels(self.declared, self.step_config.verbalizer, prediction)
        return prediction

    def _prepared(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's kwargs with this config's span rules and, with retrieval, this input's demos."""
        kwargs = self._with_spans(kwargs)
        if self.retriever is not None and "demos" not in kwargs:
            kwargs["demos"] = [self._example(d) for d in self.retriever.demos(kwargs)]
        return kwargs

    def _forward(self, **kwargs: Any) -> dspy.Prediction:
        cfg = self.step_config
        if cfg.strategy == "ensemble":
            return self._ensemble(kwargs)
        kwargs = self._prepared(kwargs)
        with in_step(self.step):
            if cfg.strategy == "score":
                labels, logprobs, inputs = self.scored(**kwargs)
                best, confidence = choose(logprobs, cfg.prior, labels.keys)
                report_confidence(confidence)
                return self._forward_postprocess([dict(labels.outputs[best])], self.signature, **inputs)
        with in_step(self.step), dspy.context(adapter=self.adapter):
            if cfg.strategy != "sc":
                return super().forward(**kwargs)
            preds, last_error, caller_config = [], None, kwargs.pop("config", {})
            for i in range(cfg.samples):
                config = {**caller_config, "temperature": cfg.temperature, "rollout_id": i, "seed": i}
                try:
                    preds.append(super().forward(**kwargs, config=config))
                except Exception as exc:  # noqa: BLE001 - a failed sample loses its vote
                    raise_stopping(exc)
                    last_error = exc
            if not preds:
                raise last_error  # type: ignore[misc]
        fields = [f for f in self.signature.output_fields if f != REASONING_FIELD]
        winner, _ = Counter(_vote_key(p, fields) for p in preds).most_common(1)[0]
        return next(p for p in preds if _vote_key(p, fields) == winner)

    def _ensemble(self, kwargs: dict[str, Any]) -> dspy.Prediction:
        """The label with the highest mean calibrated probability over the members (one scoring call each).
        Members list the labels in the declared order whatever their words, so they average by index and
        the answer is the declared label at the best index."""
        mean, inputs = None, {}
        for member in self.members:
            with in_step(self.step):
                labels, logprobs, inputs = member.scored(**member._prepared(dict(kwargs)))
            probs = calibrate(distribution(logprobs), member.step_config.prior, labels.keys)
            mean = probs if mean is None else mean + probs
        declared = label_set(self.declared)
        if mean is None or declared is None:
            raise ValueError("an ensemble step needs members and label outputs")
        best = int(np.argmax(mean))
        report_confidence(float(mean[best] / len(self.members)))
        return self._forward_postprocess([dict(declared.outputs[best])], self.signature, **inputs)


_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set_path(root: Any, path: str, value: Any) -> None:
    """Set ``value`` at a ``named_predictors()`` path such as ``a.b`` or ``steps[1]``."""
    parts = [(name, int(idx) if idx else None) for name, idx in _PATH.findall(path)]
    obj = root
    for name, idx in parts[:-1]:
        obj = obj[idx] if idx is not None else getattr(obj, name)
    name, idx = parts[-1]
    if idx is not None:
        obj[idx] = value
    else:
        setattr(obj, name, value)


def build_program(program: dspy.Module, steps: Mapping[str, StepConfig],
                  lm_for: Callable[[str], dspy.LM]) -> dspy.Module:
    """A deep copy of ``program`` whose named steps run with ``steps``; ``lm_for`` maps model names to LMs."""
    copy = program.deepcopy()
    predictors = dict(copy.named_predictors())
    unknown = set(steps) - set(predictors)
    if unknown:
        raise KeyError(f"steps {sorted(unknown)} are not predictors of {type(program).__name__} "
                       f"(it has {sorted(predictors)})")
    for name, config in steps.items():
        original = predictors[name]
        members = tuple(ConfiguredPredict(original.signature, m, lm_for(m.model), step=name) for m in config.members)
        _set_path(copy, name, ConfiguredPredict(original.signature, config, lm_for(config.model), step=name,
                                                members=members))
    return copy


def baseline_steps(program: dspy.Module, model: str, fmt: str = "json") -> dict[str, StepConfig]:
    """The unoptimized program on one model: original instructions, no demos, direct decoding."""
    return {name: StepConfig(instruction=p.signature.instructions, model=model, format=fmt)  # type: ignore[arg-type]
            for name, p in program.named_predictors()}
