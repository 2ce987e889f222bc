"""Label scoring on a loaded llama.cpp model: the summed log-probability of each candidate continuation
(a label's tokens) after one prompt, in one pass over the shared prefix.

The prompt is evaluated once (reusing the KV prefix the instance already holds, as ``Llama.generate``
does); then the continuations' tokens form a trie, walked depth first: each trie node's token is
evaluated once, from the position of its parent, by rewinding ``llm.n_tokens`` (``Llama.eval`` drops the
KV cache past that position). Log-probabilities are the log-softmax of the raw logits (no sampler, no
constraint). Afterwards ``llm.n_tokens``/``input_ids`` describe the last evaluated path, so a following
call still reuses the prompt's KV prefix.

>>> label_logprobs(llm, prompt_tokens(llm, "Review: great\\nSentiment:"), [tok(" positive"), tok(" negative")])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Request metadata: the continuations (label texts, as the format writes them) to score after the prompt.
SCORE_METADATA_KEY = "progopt_score"


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)  # indices of the continuations that end here


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return x - np.log(np.exp(x).sum())


def _last_logprobs(llm: Any) -> np.ndarray:
    """Log-softmax of the logits of the last token ``Llama.eval`` evaluated (llama.cpp's last output)."""
    return log_softmax(np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)))


def eval_prompt(llm: Any, tokens: Sequence[int]) -> np.ndarray:
    """Evaluate ``tokens`` after the longest prefix already in the KV cache (at least the last token is
    evaluated, for its logits); the next-token log-probs."""
    if not tokens:
        raise ValueError("label scoring needs a non-empty prompt")
    if len(tokens) >= llm.n_ctx():
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {llm.n_ctx()}")
    common = 0
    for held, token in zip(llm.input_ids[:llm.n_tokens], tokens, strict=False):
        if held != token:
            break
        common += 1
    common = min(common, len(tokens) - 1)
    llm.n_tokens = common
    llm.eval(list(tokens[common:]))
    return _last_logprobs(llm)


def label_logprobs(llm: Any, prompt: Sequence[int], continuations: Sequence[Sequence[int]]) -> tuple[list[float], int]:
    """The summed log-prob of each continuation after ``prompt``, and the number of distinct continuation
    tokens scored (trie nodes). Every continuation must be non-empty."""
    root = _Node()
    for i, tokens in enumerate(continuations):
        if not tokens:
            raise ValueError(f"continuation {i} has no tokens")
        node = root
        for token in tokens:
            node = node.children.setdefault(int(token), _Node())
        node.ends.append(i)
    if len(prompt) + max(len(c) for c in continuations) > llm.n_ctx():
        raise ValueError(f"prompt and labels exceed the context window of {llm.n_ctx()}")
    scores = [0.0] * len(continuations)

    def visit(node: _Node, logprobs: np.ndarray, position: int, total: float) -> int:
        """Depth first, so the KV cache holds exactly the path to ``node`` when its children are scored;
        the number of trie nodes below ``node``."""
        count = 0
        for token, child in node.children.items():
            score = total + float(logprobs[token])
            for i in child.ends:
                scores[i] = score
            count += 1
            if child.children:
                llm.n_tokens = position
                llm.eval([token])
                count += visit(child, _last_logprobs(llm), position + 1, score)
        return count

    scored = visit(root, eval_prompt(llm, prompt), len(prompt), 0.0)
    return scores, scored


def continuation_tokens(llm: Any, text: str) -> list[int]:
    """``text`` as the model would generate it after a prompt: no BOS, special tokens as plain text."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
