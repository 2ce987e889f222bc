"""The fast-forward decoder gives llama-cpp-python's own constrained output (Outlines' logits processor in
``create_completion``) for greedy decoding, and stays deterministic when sampling."""

from __future__ import annotations

import json

import llama_cpp
import pytest
from outlines.backends.outlines_core import OutlinesCoreLogitsProcessor

from optimizer.adapters.chat import reply_regex
from optimizer.adapters.compact import output_regex, outputs_model
from optimizer.models import GEMMA3, SMOLLM2, local
from optimizer.models.constrain import Constraint
from optimizer.models.decode import GuidedMask, chat_tokens, complete, prompt_tokens
from programs.sentiment import TASK, ClassifySentiment
from programs.trec import FineClass

pytestmark = pytest.mark.slow  # runs the local models

SENTENCES = [ex.sentence for ex in TASK.load("test", limit=6)]


def reference(llm, tokens, index, **kwargs) -> tuple[str, str, int]:
    llm.reset()  # both paths evaluate the whole prompt: a reused KV prefix changes near-ties on some CPUs
    out = llm.create_completion(tokens, logits_processor=llama_cpp.LogitsProcessorList(
        [OutlinesCoreLogitsProcessor(index, "numpy")]), **kwargs)
    choice = out["choices"][0]
    return choice["text"], choice["finish_reason"], out["usage"]["completion_tokens"]


def ours(model, tokens, constraint, **kwargs) -> tuple[str, str, int]:
    index, forced, _ = model.compiler.index(constraint)
    model.llm.reset()
    out = complete(model.llm, tokens, GuidedMask(index, forced, model.llm.n_vocab()), **kwargs)
    return out.text, out.finish, out.completion_tokens


def json_constraint(signature) -> Constraint:
    return Constraint("json_schema", json.dumps(outputs_model(signature).model_json_schema(), sort_keys=True))


@pytest.mark.parametrize("signature", [ClassifySentiment, FineClass], ids=["2-labels", "50-labels"])
def test_greedy_gemma_completion_matches_llama_cpp_python(signature):
    model = local.load(GEMMA3, slot="decode-test")
    for constraint in (json_constraint(signature), Constraint("regex", output_regex(signature))):
        index, _, _ = model.compiler.index(constraint)
        for sentence in SENTENCES:
            tokens = prompt_tokens(model.llm, f"Classify: {sentence}\nAnswer:")
            kwargs = {"max_tokens": 40, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
            expected = reference(model.llm, tokens, index, **kwargs)
            assert ours(model, tokens, constraint, **kwargs) == expected, sentence


def test_greedy_smollm2_chat_matches_llama_cpp_python():
    model = local.load(SMOLLM2, slot="decode-test")
    constraint = Constraint("regex", reply_regex(ClassifySentiment))
    index, _, _ = model.compiler.index(constraint)
    for sentence in SENTENCES:
        tokens, stop = chat_tokens(model.llm, model.chat_formatter(), [{"role": "user", "content": sentence}])
        kwargs = {"max_tokens": 40, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": stop}
        assert ours(model, tokens, constraint, **kwargs) == reference(model.llm, tokens, index, **kwargs)


def test_truncation_at_max_tokens_matches():
    model = local.load(SMOLLM2, slot="decode-test")
    constraint = json_constraint(FineClass)
    index, _, _ = model.compiler.index(constraint)
    tokens = prompt_tokens(model.llm, f"Question: {SENTENCES[0]}\nJSON:")
    kwargs = {"max_tokens": 5, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
    result = ours(model, tokens, constraint, **kwargs)
    assert result == reference(model.llm, tokens, index, **kwargs) and result[1] == "length"


def test_seeded_sampling_is_deterministic_and_valid():
    model = local.load(SMOLLM2, slot="decode-test")
    constraint = Constraint("regex", output_regex(FineClass))
    tokens = prompt_tokens(model.llm, f"Question: {SENTENCES[1]}\nLabel:")
    kwargs = {"max_tokens": 40, "temperature": 0.9, "top_p": 1.0, "stop": []}
    runs = [[ours(model, tokens, constraint, seed=seed, **kwargs) for seed in range(4)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert all(text.strip() in FineClass.model_fields["fine"].annotation.__args__ for text, _, _ in runs[0])
