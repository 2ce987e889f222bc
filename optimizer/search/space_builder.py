"""Build a compile's :class:`SearchSpace` once: candidate instructions and demo sets for every step."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from optimizer.adapters.scoring import label_set
from optimizer.search.candidates import (
    bootstrapped_sets,
    covering_sizes,
    first_label_field,
    label_count,
    labeled_draws,
    propose,
    rewrites,
)
from optimizer.search.label_words import words_for
from optimizer.search.retrieval import retrieval_candidates
from optimizer.space.build import baseline_steps
from optimizer.space.variant import Format, SearchSpace, StepSpace
from optimizer.spans import step_spans

BOOTSTRAP_EXAMPLES = 24


def _plain(demos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON-safe demo values (pydantic outputs become dicts), so the space can be stored with the study."""
    return json.loads(json.dumps(demos, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o)))


def build_space(program: dspy.Module, trainset: Sequence[dspy.Example], metric: Callable, *,
                models: Sequence[str], lm_for: Callable[[str], dspy.LM], seed: int,
                proposer: str | None, teacher: str | None, n_proposals: int = 2,
                demo_sizes: Sequence[int] = (2, 4), strategies: Sequence[str] = ("direct",),
                formats: Sequence[Format] = ("json",), demo_draws: int = 1,
                retrieval_sizes: Sequence[int] = (), label_words: Sequence[str] = ()) -> SearchSpace:
    """Candidates per step. Every LM call made here (proposals, bootstrapping) counts toward the budget.
    ``demo_draws``: label-balanced sets per demo size (plus one demo per label where no size shows every
    label: :func:`covering_sizes`); ``retrieval_sizes``: a retrieved-demo candidate
    (``knn{k}``) per size, over the step's training examples; ``label_words``: label-word candidates of label
    steps by source ("signature", "auto": :mod:`optimizer.search.label_words`)."""
    predictors = dict(program.named_predictors())
    label_fields = {name: first_label_field(p.signature) for name, p in predictors.items()}
    boot: dict[str, list[list[dict[str, Any]]]] = {}
    if teacher:
        boot = bootstrapped_sets(program, trainset, metric, baseline_steps(program, teacher), lm_for,
                                 sizes=demo_sizes, max_examples=BOOTSTRAP_EXAMPLES, seed=seed,
                                 label_fields=label_fields)
    steps = {}
    for name, predictor in predictors.items():
        sig = predictor.signature
        instructions = rewrites(sig)
        if proposer:
            for i, text in enumerate(propose(sig, trainset, lm_for(proposer), n=n_proposals, seed=seed)):
                instructions[f"proposed{i}"] = text
        fields = [*sig.input_fields, *sig.output_fields]
        demo_sets: dict[str, list[dict[str, Any]]] = {"zero": []}
        sizes = covering_sizes(demo_sizes, label_count(sig, label_fields[name]))
        demo_sets.update(labeled_draws(fields, label_fields[name], trainset, sizes, seed, demo_draws))
        for k, demos in zip(demo_sizes, boot.get(name, []), strict=False):
            demo_sets[f"boot{k}"] = demos
        retrieved = retrieval_candidates(sig, label_fields[name], _plain([ex.toDict() for ex in trainset]),
                                         retrieval_sizes, seed)
        steps[name] = StepSpace(instructions=instructions, demo_sets={k: _plain(v) for k, v in demo_sets.items()},
                                retrieved=retrieved, labels_only=label_set(sig) is not None,
                                spans=step_spans(sig, trainset),
                                verbalizers=words_for(sig, label_words, trainset, lm_for, models, seed))
    return SearchSpace(steps=steps, models=list(models), strategies=list(strategies), formats=list(formats),
                       demo_draws=demo_draws, retrieval_sizes=list(retrieval_sizes), label_words=list(label_words))
