"""Retrieved demos on a real model (issue #16): a compile searches a ``knn`` candidate, and the artifact of that
variant runs under ``progopt run`` exactly as it ran in the compile (same demos, same predictions)."""

from __future__ import annotations

import json

import pytest

from optimizer.artifact import load_artifact, save_result
from optimizer.cli import main
from optimizer.models import ModelPool
from optimizer.search.compile import compile
from optimizer.search.settings import Budget, SearchSettings, SpaceSettings
from optimizer.space import build_program
from optimizer.space.retrieval import Retriever
from programs.sentiment import TASK, Sentiment, metric

MODEL = "local/gemma3-270m"


@pytest.mark.slow
def test_a_compiled_retrieval_variant_runs_identically_from_its_artifact(tmp_path, capsys):
    pool = ModelPool.from_names([MODEL])
    val = TASK.load("val", limit=3)
    result = compile(Sentiment(), trainset=TASK.load("train", limit=40), valset=val, metric=metric, models=pool,
                     budget=Budget(calls=60),
                     search=SearchSettings(sampler="exhaustive", objectives=("quality",), minibatch=3,
                                           promote_fraction=0.1),
                     space=SpaceSettings(proposer=None, teacher=None, formats=("compact",), retrieval_sizes=(2,),
                                         strategies=("direct",), demo_draws=1),
                     show_progress=False)
    knn = next(t for t in result.trials if t.variant.steps["classify"].demos == "knn2")
    config = knn.steps["classify"]
    assert config.retrieval is not None and config.retrieval.k == 2 and len(config.retrieval.pool) == 40
    path = save_result(result.model_copy(update={"chosen": knn.variant_key}), tmp_path / "knn.json",
                       program=Sentiment(), pool=pool)
    loaded = load_artifact(path).classify
    assert loaded.step_config == config
    in_compile = build_program(Sentiment(), knn.steps, pool.lm)
    for example in val:
        inputs = example.inputs().toDict()
        assert loaded.retriever.demos(inputs) == Retriever(config.retrieval).demos(inputs)
        expected = in_compile(**inputs).sentiment
        capsys.readouterr()
        assert main(["run", str(path), "--input", json.dumps(inputs)]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sentiment"] == expected
