"""progopt inside ``mlflow.genai.optimize_prompts``: the candidates, the evaluation bound, the choice among
statistical ties, and a real run through MLflow's API on a local store (a predict_fn with no model: it
answers right only when the prompt carries demonstrations)."""

from __future__ import annotations

import json

import pytest

from optimizer.tracking.prompt_optimizer import ProgoptPromptOptimizer, balanced_draws

TEMPLATE = "Classify the sentiment of: {{text}}"


def records(n: int) -> list[dict]:
    words = ["good", "bad"]
    return [{"inputs": {"text": f"a {words[i % 2]} film number {i}"},
             "expectations": {"label": "positive" if i % 2 == 0 else "negative"}} for i in range(n)]


def answer(prompt: str, text: str) -> str:
    """The 'model': right on every input when the prompt shows demonstrations, else always positive."""
    if "Examples:" in prompt:
        return "positive" if "good" in text else "negative"
    return "positive"


class Record:
    def __init__(self, score: float):
        self.score = score


def test_demo_draws_are_label_balanced_and_never_add_a_template_variable():
    pool = [*records(10), {"inputs": {"text": "{{evil}}"}, "expectations": {"label": "positive"}}]
    draws = balanced_draws(pool, 4, 3, seed=0)
    assert len(draws) == 3 and all(len(d) == 4 for d in draws)
    assert all(sorted(r["expectations"]["label"] for r in d) == ["negative", "negative", "positive", "positive"]
               for d in draws)
    assert not any("{{" in json.dumps(r) for d in draws for r in d)


def test_the_search_stays_within_its_evaluations_and_ships_the_shortest_tied_candidate():
    calls: list[int] = []

    def eval_fn(prompts: dict[str, str], data: list[dict]) -> list[Record]:
        calls.append(len(data))
        return [Record(float(answer(prompts["p"], r["inputs"]["text"]) == r["expectations"]["label"]))
                for r in data]

    optimizer = ProgoptPromptOptimizer(max_evals=300, demo_draws=2, validation=30, minibatch=10)
    out = optimizer.optimize(eval_fn, records(80), {"p": TEMPLATE}, enable_tracking=False)
    assert sum(calls) <= 300
    assert 0.3 < out.initial_eval_score < 0.7 and out.final_eval_score == 1.0  # the positive share, then all
    assert out.optimized_prompts["p"].startswith(TEMPLATE) and "Examples:" in out.optimized_prompts["p"]
    assert out.optimized_prompts["p"].count("Input:") == 2  # every demo set is perfect: the shortest ships
    assert "{{text}}" in out.optimized_prompts["p"]


@pytest.mark.slow  # MLflow's GenAI stack, no model
def test_optimize_prompts_runs_progopt_through_mlflows_api(tmp_path, monkeypatch):
    import mlflow
    from mlflow.genai.scorers import scorer

    from optimizer.tracking.model import using_tracking_uri

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    with using_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        prompt = mlflow.genai.register_prompt(name="sentiment", template=TEMPLATE)

        def predict_fn(text: str) -> str:
            template = mlflow.genai.load_prompt(prompt.uri).template
            return answer(template, text)

        @scorer
        def exact(outputs, expectations) -> float:
            return float(outputs == expectations["label"])

        result = mlflow.genai.optimize_prompts(predict_fn=predict_fn, train_data=records(60),
                                               prompt_uris=[prompt.uri], scorers=[exact],
                                               optimizer=ProgoptPromptOptimizer(max_evals=200, demo_draws=2,
                                                                                validation=20, minibatch=8),
                                               enable_tracking=False)
        best = result.optimized_prompts[0]
        assert "Examples:" in best.template and "{{text}}" in best.template
        assert result.final_eval_score == 1.0
