"""Label scoring on the real local models: the trie scorer's log-probs against a token-by-token
computation, and compile -> artifact -> ``progopt run`` with a calibration prior."""

from __future__ import annotations

import json

import pytest

from optimizer.artifact import save_result
from optimizer.artifact.load import read_artifact
from optimizer.cli import main
from optimizer.models import GEMMA3, SMOLLM2, ModelPool, local
from optimizer.models.decode import prompt_tokens
from optimizer.models.scoring import _last_logprobs, continuation_tokens, label_logprobs
from optimizer.search.compile import compile
from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from programs.sentiment import TASK, Sentiment, metric
from tests.fixtures.artifacts import rewrite

pytestmark = pytest.mark.slow

PROMPT = ("Classify the sentiment.\n\nSentence: a gorgeous, witty film\nSentiment: positive\n\n"
          "Sentence: dull and far too long\nSentiment:")
LABELS = [" positive", " negative", " neutral at best", " neutral"]


def _token_by_token(llm, prompt: list[int], continuation: list[int]) -> float:
    llm.reset()
    llm.eval(prompt)
    total = 0.0
    for token in continuation:
        total += float(_last_logprobs(llm)[token])
        llm.eval([token])
    return total


@pytest.mark.parametrize("spec", [SMOLLM2, GEMMA3], ids=lambda s: s.name)
def test_trie_scores_match_a_token_by_token_computation(spec):
    llm = local.load(spec, slot="test-scoring").llm
    prompt = prompt_tokens(llm, PROMPT)
    continuations = [continuation_tokens(llm, text) for text in LABELS]
    assert continuations[3] == continuations[2][:len(continuations[3])]  # a label that prefixes another
    llm.reset()
    scores, scored = label_logprobs(llm, prompt, continuations)
    expected = [_token_by_token(llm, prompt, c) for c in continuations]
    assert scores == pytest.approx(expected, abs=1e-3)
    assert scored == len({tuple(c[:i + 1]) for c in continuations for i in range(len(c))})
    assert max(scores[:2]) > scores[2]  # a real label beats a made-up one


def test_compile_artifact_and_run_apply_the_calibration_prior(tmp_path, capsys):
    result = compile(Sentiment(), trainset=TASK.load("train", limit=20), valset=TASK.load("val", limit=4),
                     metric=metric, models=ModelPool([GEMMA3]), budget=Budget(calls=40, trials=2),
                     search=SearchSettings(sampler="random", objectives=("quality",), minibatch=4, seed=0),
                     space=SpaceSettings(proposer=None, teacher=None, formats=("compact",), strategies=("score-cc",)),
                     show_progress=False)
    scored = next(t for t in result.trials if t.steps["classify"].strategy == "score")
    assert scored.steps["classify"].prior is not None  # estimated during the compile
    path = save_result(result.model_copy(update={"chosen": scored.variant_key}), tmp_path / "sst2.json")
    strategy = read_artifact(path)["steps"]["classify"]["strategy"]
    assert strategy["name"] == "score" and strategy["calibration"]["mode"] == "cc"
    assert set(strategy["calibration"]["prior"]) == {"negative", "positive"}
    assert sum(strategy["calibration"]["prior"].values()) == pytest.approx(1.0)
    sentence = json.dumps({"sentence": "a gorgeous, witty, seductive movie"})
    for label, other in (("negative", "positive"), ("positive", "negative")):
        # a prior that all but rules ``label`` out makes the calibrated choice ``label``
        prior = {label: 1e-9, other: 1 - 1e-9}
        rewrite(path, lambda d, prior=prior: d["steps"]["classify"]["strategy"]["calibration"].update(prior=prior))
        assert main(["run", str(path), "--input", sentence]) == 0
        assert json.loads(capsys.readouterr().out)["sentiment"] == label
