"""Where an evaluator call's time goes outside llama.cpp: cProfile over the quickstart's chosen variant.

    .venv/bin/python experiments/profile_evaluator.py gemma3 compact    # or: smollm2|gemma3 json|compact|chat

The SST-2 sentiment program with 4 label-balanced train demos, 20 test examples of warm-up, then test
examples 21-120 under cProfile with llama.cpp's perf counters reset. Prints ms per example for llama.cpp
(its counters), the engine's pieces (decode, sampling, tokenizing), DSPy's (adapter, cache) and ours
(accounting callbacks), and leaves the whole profile in the temporary directory for pstats/snakeviz.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.models import GEMMA3, SMOLLM2, ModelPool, local  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.variant import StepConfig  # noqa: E402
from programs.sentiment import TASK, Sentiment, metric  # noqa: E402

PIECES = {  # label -> (file suffix, function): cumulative time per example
    "LlamaEngine.complete (all of the engine)": ("models/engine.py", "complete"),
    "  llama.cpp decode (llama_decode)": ("llama_cpp/_internals.py", "decode"),
    "  sampling (sampler chain + constraint mask)": ("llama_cpp/llama.py", "sample"),
    "    constraint mask (outlines_core kernels)": ("optimizer/models/decode.py", "__call__"),
    "  tokenizing the prompt": ("llama_cpp/llama.py", "tokenize"),
    "DSPy ChatAdapter/JSONAdapter format (json, chat)": ("dspy/adapters/base.py", "format"),
    "DSPy cache get": ("dspy/clients/cache.py", "get"),
    "DSPy cache put": ("dspy/clients/cache.py", "put"),
    "progopt accounting (finish_call)": ("models/response.py", "finish_call"),
    "progopt Ledger callbacks": ("optimizer/accounting.py", "on_lm_end"),
}


def main() -> None:
    import llama_cpp

    spec = {"smollm2": SMOLLM2, "gemma3": GEMMA3}[sys.argv[1]]
    fmt = sys.argv[2]
    runtime.configure(tempfile.mkdtemp(prefix="profile-evaluator-"))
    pool = ModelPool.default()
    train = TASK.load("train")
    pos = [e for e in train if e.sentiment == "positive"][:2]
    neg = [e for e in train if e.sentiment == "negative"][:2]
    demos = [{"sentence": e.sentence, "sentiment": e.sentiment} for pair in zip(pos, neg, strict=True) for e in pair]
    config = StepConfig(instruction=Sentiment().classify.signature.instructions, demos=demos, model=spec.name,
                        format=fmt)
    program = build_program(Sentiment(), {"classify": config}, pool.lm)
    test = TASK.load("test", limit=120)
    evaluate(program, test[:20], metric, show_progress=False)
    ctx = local.load(spec, slot="classify").llm._ctx.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    ev = evaluate(program, test[20:], metric, show_progress=False)
    profile.disable()
    wall = time.perf_counter() - started
    perf = llama_cpp.llama_perf_context(ctx)
    n = len(ev.results)
    print(f"{spec.name} {fmt}, {n} examples: {wall / n * 1000:.1f} ms per example; llama.cpp prompt "
          f"{perf.t_p_eval_ms / n:.1f} ms ({perf.n_p_eval / n:.1f} tokens) + generation {perf.t_eval_ms / n:.1f} ms "
          f"({perf.n_eval / n:.1f} evals); ratio {wall * 1000 / (perf.t_p_eval_ms + perf.t_eval_ms):.2f}")
    out = Path(tempfile.gettempdir()) / f"progopt-profile-{sys.argv[1]}-{fmt}.prof"
    profile.dump_stats(out)
    totals: dict[str, float] = {}
    for (file, _, func), (*_, cumulative, _callers) in pstats.Stats(str(out)).stats.items():  # type: ignore[attr-defined]
        for label, (suffix, name) in PIECES.items():
            if file.endswith(suffix) and func == name:
                totals[label] = totals.get(label, 0.0) + cumulative
    for label in PIECES:
        print(f"{label:48s} {totals.get(label, 0.0) / n * 1000:7.2f} ms per example")
    print(f"profile: {out}")


if __name__ == "__main__":
    main()
