"""Constrained generation on a loaded llama.cpp model with forced-token fast-forward.

Whenever the constraint allows exactly one next token, that token is taken without a sampling step, and
when the only allowed token is end-of-sequence the generation ends without evaluating the last token.
Free tokens are sampled exactly as ``Llama.create_completion`` samples them (same sampler chain, same
defaults, same seed) with the constraint's mask applied, and llama.cpp evaluates the same tokens in the
same batches as there (the prompt suffix, then one token at a time), so greedy outputs are identical,
token for token. Forced runs are not batched: a batch changes llama.cpp's arithmetic enough to flip a
greedy choice between two spellings of the same text (measured on SmolLM2's chat format). At a
temperature above 0 a forced token consumes no random draw, so seeded samples stay deterministic but can
differ from llama-cpp-python's own loop. The prompt's KV prefix is reused through ``Llama.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# create_completion / create_chat_completion defaults that the engine does not set
TOP_K, MIN_P, REPEAT_PENALTY = 40, 0.05, 1.0


@dataclass
class Completion:
    text: str
    finish: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


class GuidedMask:
    """A llama-cpp-python logits processor over an outlines_core ``Guide`` that the decoder advances
    itself, one token at a time, forced or sampled. One per call."""

    def __init__(self, index: Any, forced: dict[int, int | None], vocab_size: int):
        from outlines_core import Guide
        from outlines_core.kernels.numpy import allocate_token_bitmask

        self.index, self.guide, self._forced = index, Guide(index), forced
        self.mask = allocate_token_bitmask(vocab_size)

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        from outlines_core.kernels.numpy import apply_token_bitmask_inplace, fill_next_token_bitmask

        fill_next_token_bitmask(self.guide, self.mask)
        apply_token_bitmask_inplace(logits, self.mask)
        return logits

    def advance(self, token: int) -> None:
        """Follow one emitted token (forced or sampled)."""
        self.guide.advance(token_id=token, return_tokens=False)

    def forced(self) -> int | None:
        """The only token the constraint allows next, if there is exactly one (cached per state)."""
        state = self.guide.get_state()
        if state not in self._forced:
            allowed = self.index.get_allowed_tokens(state)
            self._forced[state] = allowed[0] if allowed is not None and len(allowed) == 1 else None
        return self._forced[state]


def prompt_tokens(llm: Any, prompt: str) -> list[int]:
    """``prompt`` tokenized as ``Llama.create_completion`` tokenizes a text prompt (BOS/EOS per model)."""
    model = llm._model
    cls_id, sep_id, bos_id = model.token_cls(), model.token_sep(), llm.token_bos()
    bos = [cls_id if cls_id != -1 else bos_id]
    if not model.add_bos_token() or bos == [-1]:
        bos = []
    eos = [] if not model.add_eos_token() and sep_id == -1 else [sep_id if sep_id != -1 else llm.token_eos()]
    return bos + (llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) if prompt else []) + eos


def complete(llm: Any, tokens: list[int], mask: GuidedMask, *, max_tokens: int | None, temperature: float,
             top_p: float, seed: int, stop: list[str]) -> Completion:
    """Generate after ``tokens`` under ``mask``'s constraint; stops, length and usage as create_completion."""
    import llama_cpp

    n_ctx = llm.n_ctx()
    if len(tokens) >= n_ctx:
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
    limit = n_ctx - len(tokens) if not max_tokens or max_tokens <= 0 else min(max_tokens, n_ctx - len(tokens))
    sampling = {"top_k": TOP_K, "top_p": top_p, "min_p": MIN_P, "temp": temperature,
                "repeat_penalty": REPEAT_PENALTY, "logits_processor": llama_cpp.LogitsProcessorList([mask])}
    stops = [s.encode("utf-8") for s in stop]
    llm.set_seed(seed)
    out: list[int] = []
    text = b""
    multibyte = 0  # create_completion skips its stop and length checks inside a multi-byte character

    def emit(token: int) -> str | None:
        """Append a token; the finish reason if it ends the completion."""
        nonlocal text, multibyte
        out.append(token)
        mask.advance(token)
        text = llm.detokenize(out, prev_tokens=tokens)
        for k, char in enumerate(text[-3:]):
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > 3 - k and pattern & char == pattern:
                    multibyte = num - (3 - k)
        if multibyte > 0:
            multibyte -= 1
            return None
        hits = [s for s in stops if s in text]
        if hits:
            text = text[:text.index(hits[0])]
            return "stop"
        return "length" if len(out) >= limit else None

    generator = llm.generate(tokens, **sampling)  # prefix reuse, the prompt batch, the first sample
    token = next(generator)
    generator.close()
    while True:
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            finish = "stop"
            break
        if finish := emit(token):
            break
        forced = mask.forced()
        if forced is not None and llama_cpp.llama_vocab_is_eog(llm._model.vocab, forced):
            finish = "stop"  # only the end may follow: no need to evaluate ``token``
            break
        llm.eval([token])
        token = forced if forced is not None else llm.sample(idx=None, **sampling)
    return Completion(text.decode("utf-8", errors="ignore"), finish, len(tokens), len(out))


def chat_formatter(llm: Any) -> Any:
    """The formatter llama-cpp-python's chat completion uses for a GGUF chat template (build once per model)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if llm.chat_handler is not None or llm.chat_format != "chat_template.default" or not template:
        raise ValueError(f"{llm.model_path}: constrained chat decoding needs the GGUF's own chat template "
                         f"(this model uses {llm.chat_format!r}); use `chat: false` for a completion prompt")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(template=template, stop_token_ids=[eos_id],
                               eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
                               bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "")


def chat_tokens(llm: Any, formatter: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
    """The prompt tokens and the template's stop strings, as ``Llama.create_chat_completion`` makes them."""
    result = formatter(messages=messages)
    tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
    stop = [] if result.stop is None else [result.stop] if isinstance(result.stop, str) else list(result.stop)
    return tokens, stop
