"""progopt's search as an MLflow prompt optimizer:
``mlflow.genai.optimize_prompts(predict_fn=..., train_data=..., prompt_uris=..., optimizer=ProgoptPromptOptimizer())``.

MLflow's optimizer contract gives an optimizer the registered templates, the training records and an
``eval_fn`` that runs the user's ``predict_fn`` on candidate templates; the model and its format are the
``predict_fn``'s. So this searches what a template can carry, with progopt's machinery where it applies:

- **candidates** per template: the original, and the original followed by label-balanced demonstrations from
  the training records (sizes :attr:`demo_sizes`, :attr:`demo_draws` seeded draws each; balanced over the
  expectation's value when it is a short label), as progopt's labeled demo sets are;
- **search**: an Optuna study (TPE, seeded) over one candidate per template, each trial scored on a
  minibatch, the best third so far promoted to the whole validation slice (successive halving, as a compile);
- **choice**: among the promoted, the leader and the candidates statistically tied with it (paired bootstrap CI of
  the difference includes 0) are candidates; the shortest template among them ships (the cheapest to send).

``max_evals`` bounds the examples ``eval_fn`` runs (one ``predict_fn`` call each). The training records split
into a demo pool and a validation slice (:attr:`validation` records, seeded), so no demo is scored on itself.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import mlflow
import numpy as np
import optuna
from mlflow.genai.optimize.optimizers import BasePromptOptimizer
from mlflow.genai.optimize.types import PromptOptimizerOutput

from optimizer.statistics import paired_difference

MAX_LABEL_LENGTH = 40  # an expectation longer than this is free text: demos are drawn without balancing


def demo_block(records: Sequence[dict[str, Any]]) -> str:
    """Demonstrations appended to a template: each record's inputs and expected output as JSON lines."""
    lines = ["", "", "Examples:"]
    for r in records:
        lines += [f"Input: {json.dumps(r['inputs'], ensure_ascii=False)}",
                  f"Output: {json.dumps(_expected(r), ensure_ascii=False)}"]
    return "\n".join(lines)


def _expected(record: dict[str, Any]) -> Any:
    return record.get("expectations", record.get("outputs"))


def _label(record: dict[str, Any]) -> str:
    text = json.dumps(_expected(record), sort_keys=True, ensure_ascii=False)
    return text if len(text) <= MAX_LABEL_LENGTH else ""


def balanced_draws(pool: Sequence[dict[str, Any]], size: int, draws: int, seed: int) -> list[list[dict[str, Any]]]:
    """``draws`` demo sets of ``size`` records, labels taken round-robin in a seeded order."""
    out = []
    for d in range(draws):
        rng = random.Random(seed * 1000 + size * 10 + d)
        by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in pool:
            if "{{" not in json.dumps(r, ensure_ascii=False):  # a demo must not add a template variable
                by_label[_label(r)].append(r)
        labels = sorted(by_label)
        rng.shuffle(labels)
        shuffled = {lab: rng.sample(by_label[lab], len(by_label[lab])) for lab in labels}
        picks = [shuffled[labels[i % len(labels)]][i // len(labels)] for i in range(size)
                 if i // len(labels) < len(shuffled[labels[i % len(labels)]])]
        if picks:
            out.append(picks)
    return out


class ProgoptPromptOptimizer(BasePromptOptimizer):
    """progopt's search as MLflow's ``BasePromptOptimizer`` (see the module docstring). Stateless between
    ``optimize`` calls."""

    def __init__(self, *, max_evals: int = 600, demo_sizes: Sequence[int] = (2, 4), demo_draws: int = 4,
                 minibatch: int = 12, validation: int = 40, promote_fraction: float = 1 / 3, seed: int = 0):
        self.max_evals, self.demo_sizes, self.demo_draws = max_evals, tuple(demo_sizes), demo_draws
        self.minibatch, self.validation, self.seed = minibatch, validation, seed
        self.promote_fraction = promote_fraction

    def candidates(self, template: str, pool: Sequence[dict[str, Any]]) -> list[str]:
        """The original template, then one per demo draw and size."""
        out = [template]
        for size in self.demo_sizes:
            out += [template + demo_block(demos) for demos in balanced_draws(pool, size, self.demo_draws, self.seed)]
        return list(dict.fromkeys(out))

    def optimize(self, eval_fn: Callable[[dict[str, str], list[dict[str, Any]]], list[Any]],
                 train_data: list[dict[str, Any]], target_prompts: dict[str, str],
                 enable_tracking: bool = True) -> PromptOptimizerOutput:
        records = list(train_data)
        random.Random(self.seed).shuffle(records)
        val, pool = records[:self.validation], records[self.validation:] or records
        options = {name: self.candidates(t, pool) for name, t in target_prompts.items()}
        spent, scored = 0, {}  # scored: candidate key -> per-example scores on the whole validation slice

        def run(choice: dict[str, int], data: list[dict[str, Any]]) -> list[float]:
            nonlocal spent
            spent += len(data)
            prompts = {name: options[name][i] for name, i in choice.items()}
            return [float(r.score or 0.0) for r in eval_fn(prompts, data)]

        def key(choice: dict[str, int]) -> str:
            return json.dumps(choice, sort_keys=True)

        original = dict.fromkeys(target_prompts, 0)
        scored[key(original)] = run(original, val)
        initial = float(np.mean(scored[key(original)]))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=self.seed, multivariate=True))
        minibatch_scores: list[float] = []
        rng = random.Random(self.seed)
        while spent + self.minibatch <= self.max_evals:
            trial = study.ask()
            choice = {name: trial.suggest_categorical(name, list(range(len(o)))) for name, o in options.items()}
            if key(choice) in scored:
                study.tell(trial, float(np.mean(scored[key(choice)])))
                if len(scored) >= np.prod([len(o) for o in options.values()]):
                    break
                continue
            score = float(np.mean(run(choice, rng.sample(val, min(self.minibatch, len(val))))))
            study.tell(trial, score)
            minibatch_scores.append(score)
            threshold = float(np.quantile(minibatch_scores, 1 - self.promote_fraction))
            if score >= threshold and spent + len(val) <= self.max_evals:
                scored[key(choice)] = run(choice, val)
        best = self._choose(scored, options)
        optimized = {name: options[name][i] for name, i in best.items()}
        final = float(np.mean(scored[key(best)]))
        if enable_tracking and mlflow.active_run() is not None:
            mlflow.log_metrics({"progopt.evaluated_examples": spent, "progopt.promoted": len(scored)})
        return PromptOptimizerOutput(optimized_prompts=optimized, initial_eval_score=initial,
                                     final_eval_score=final)

    @staticmethod
    def _choose(scored: dict[str, list[float]], options: dict[str, list[str]]) -> dict[str, int]:
        """The leader by mean, or the shortest candidate statistically tied with it (paired CI includes 0)."""
        leader = max(scored, key=lambda k: (np.mean(scored[k]), -len(k)))
        tied = [k for k in scored if k == leader or (
            len(scored[k]) == len(scored[leader])
            and paired_difference([[s] for s in scored[leader]], [[s] for s in scored[k]])[1][0] <= 0)]

        def length(k: str) -> int:
            return sum(len(options[name][i]) for name, i in json.loads(k).items())

        return json.loads(min(tied, key=lambda k: (length(k), k)))

