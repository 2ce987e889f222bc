"""Benchmark the local llama.cpp engine: generation speed with and without a JSON-Schema constraint,
first-call schema compile time, and evaluator throughput with and without KV prefix reuse.

Run from the repository root (estimated 5-10 minutes on 2 otherwise idle cores):

    .venv/bin/python experiments/bench_engine.py

Options: ``--threads N`` (llama.cpp decode and prompt-batch threads; default: whatever the engine
sets), ``--prompts N``, ``--examples N``, ``--out PATH``. On a CPU shared with other work the engine's
2-thread default collapses (each prompt evaluation then costs seconds regardless of its length); there
``--threads 1 --examples 50`` took 9 minutes at load average ~9 on 2 cores.

Prints a Markdown report and writes it to ``experiments/results/engine-<YYYY-MM-DD>.md``. Every DSPy
run gets its own fresh temporary disk cache, so no call is served from a cache (the report shows it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dspy
from dspy.lm15 import Config, Message, Request, Response, Usage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `programs` is not an installed package: run against this checkout

from optimizer import runtime  # noqa: E402
from optimizer.evaluate import evaluate  # noqa: E402
from optimizer.models import GEMMA3, SMOLLM2, ModelPool, ModelSpec, local  # noqa: E402
from optimizer.models.constrain import Constraint, ConstraintCompiler  # noqa: E402
from optimizer.models.engine import LlamaEngine, constraint_of  # noqa: E402
from optimizer.space.build import build_program  # noqa: E402
from optimizer.space.variant import StepConfig  # noqa: E402
from programs.entities import EntityExtractor  # noqa: E402
from programs.sentiment import TASK, Sentiment, metric  # noqa: E402

RESULTS_DIR = ROOT / "experiments" / "results"
COMMAND = ".venv/bin/python experiments/bench_engine.py"
MODELS: tuple[ModelSpec, ...] = (SMOLLM2, GEMMA3)
DEFAULT_THREADS = local.n_threads()
STEP = "classify"  # the sentiment program's only predictor: also the KV slot its calls use

GEN_PROMPTS = 20  # SST-2 test sentences for the generation benchmark
GEN_MAX_TOKENS = 48  # same cap for both modes; the free string field lets constrained runs go as long
COMPILE_REPEATS = 3  # fresh ConstraintCompiler builds per schema (median reported)
EVAL_EXAMPLES = 100  # SST-2 test examples per evaluator mode
EVAL_CHUNK = 5  # examples per evaluate() call; the two modes alternate chunk by chunk
DEMOS_PER_CLASS = 2  # 4 label-balanced demos make the shared prompt prefix long

GEN_SYSTEM = "You summarise movie reviews."
GEN_USER = ('Review: {sentence}\n\nRespond with a JSON object with one field, "summary": a detailed '
            "description of what the reviewer thinks.")
SUMMARY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"summary": {"type": "string"}},
                                  "required": ["summary"], "additionalProperties": False}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict[str, str]:
    """What the numbers were measured on: cores, CPU, RAM, load, package versions, code revision."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "optimizer"], cwd=ROOT, capture_output=True, text=True)
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": cpu, "ram": f"{mem_kb / 1024 ** 2:.1f} GiB",
        "python": platform.python_version(),
        "llama-cpp-python": version("llama_cpp_python"), "outlines": version("outlines"),
        "outlines_core": version("outlines_core"), "dspy": version("dspy"),
        "commit": git.stdout.strip() + (" (optimizer/ has uncommitted edits)" if dirty.stdout.strip() else ""),
    }


class CaptureEngine:
    """A stand-in engine that records the request DSPy builds and answers with a fixed text."""

    supports_response_schema = True
    supported_params = LlamaEngine.supported_params

    def __init__(self, answer: str):
        self.answer, self.requests = answer, []

    def complete(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(id=None, model=request.model, message=Message.assistant(self.answer),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0))

    def close(self) -> None:
        """Nothing to release."""


def program_constraint(program: dspy.Module, inputs: dict[str, str], answer: str, cache: Path) -> Constraint:
    """The JSON-Schema constraint the JSONAdapter sends for ``program``'s (single) step."""
    engine = CaptureEngine(answer)
    runtime.configure(cache)
    with dspy.context(lm=dspy.LM(f"capture/{type(program).__name__}", engine=engine), adapter=dspy.JSONAdapter()):
        program(**inputs)
    constraint = constraint_of(engine.requests[0])
    assert constraint is not None, "the JSONAdapter sent no response_format"
    return constraint


def gen_request(spec: ModelSpec, sentence: str, max_tokens: int, constrained: bool) -> Request:
    fmt = {"type": "json_schema", "name": "summary", "schema": SUMMARY_SCHEMA, "strict": True}
    return Request(model=spec.name, system=GEN_SYSTEM, messages=(Message.user(GEN_USER.format(sentence=sentence)),),
                   config=Config(max_tokens=max_tokens, temperature=0.0, response_format=fmt if constrained else None))


def bench_generation(spec: ModelSpec, sentences: Sequence[str]) -> dict[str, Any]:
    """Generation-only tokens/s: each prompt is first evaluated by a 1-token call, so the measured calls
    reuse its KV prefix and their time is (almost) all generation. Modes alternate which goes first.
    Both engine wall time and process CPU time are kept: CPU time is less disturbed by other load."""
    engine = LlamaEngine(spec)
    engine.complete(gen_request(spec, sentences[0], 4, constrained=True))  # load + build the processor
    runs: dict[str, list[tuple[int, float, float, str]]] = {"unconstrained": [], "constrained": []}
    for i, sentence in enumerate(sentences):
        engine.complete(gen_request(spec, sentence, 1, constrained=False))
        for mode in (("unconstrained", "constrained") if i % 2 == 0 else ("constrained", "unconstrained")):
            request = gen_request(spec, sentence, GEN_MAX_TOKENS, constrained=mode == "constrained")
            cpu = time.process_time()
            out = engine.complete(request)
            cpu = time.process_time() - cpu
            tokens = out.usage.output_tokens if out.usage else 0
            runs[mode].append((tokens, out.provider_data["latency_s"], cpu, out.finish_reason or ""))
    result: dict[str, Any] = {}
    for mode, calls in runs.items():
        tokens = sum(c[0] for c in calls)
        result[mode] = {"tok_s": tokens / sum(c[1] for c in calls), "tok_cpu_s": tokens / sum(c[2] for c in calls),
                        "mean_tokens": tokens / len(calls), "at_cap": sum(c[3] == "length" for c in calls),
                        "calls": len(calls)}
    for key in ("tok_s", "tok_cpu_s"):
        result[f"ratio_{key}"] = result["constrained"][key] / result["unconstrained"][key]
    # per prompt, the two modes ran back to back: their ratio is the least disturbed by other load
    result["paired_ratio"] = statistics.median(
        (c[0] / c[1]) / (u[0] / u[1]) for c, u in zip(runs["constrained"], runs["unconstrained"], strict=True)
        if c[0] and u[0])
    return result


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and its process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def bench_compile(spec: ModelSpec, constraints: dict[str, Constraint]) -> dict[str, Any]:
    """(wall, CPU) seconds to build the model's constraint compiler (tokenizer and vocabulary) and each
    schema's index in a fresh compiler, and the seconds of a cached ``index()``."""
    llm = local.load(spec).llm
    wraps: list[tuple[float, float]] = []
    builds: dict[str, list[tuple[float, float]]] = {name: [] for name in constraints}
    hits: dict[str, list[float]] = {name: [] for name in constraints}
    for _ in range(COMPILE_REPEATS):
        compiler, wall, cpu = timed(partial(ConstraintCompiler, llm))
        wraps.append((wall, cpu))
        for name, constraint in constraints.items():
            (*_, built), wall, cpu = timed(partial(compiler.index, constraint))
            assert built, "a fresh ConstraintCompiler served a cached index"
            builds[name].append((wall, cpu))
            hits[name].append(timed(partial(compiler.index, constraint))[1])
    return {"wrap": wraps, "build": builds, "hit": hits}


def sentiment_program(spec: ModelSpec, pool: ModelPool, demos: list[dict[str, Any]]) -> dspy.Module:
    config = StepConfig(instruction=Sentiment().classify.signature.instructions, demos=demos, model=spec.name)
    return build_program(Sentiment(), {STEP: config}, pool.lm)


def perf_counts(llm: Any) -> int:
    """Prompt tokens llama.cpp has evaluated in batches since the last perf reset (prefix hits excluded)."""
    import llama_cpp

    return int(llama_cpp.llama_perf_context(llm._ctx.ctx).n_p_eval)


def resetting(llm: Any, counter: list[int]) -> Callable[..., Any]:
    """``llm.create_completion`` that first drops the KV cache. The chat path calls it too."""
    original = llm.create_completion

    def create_completion(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        llm.reset()
        return original(*args, **kwargs)

    return create_completion


class ModeRun:
    """Totals of one evaluator mode over all its chunks."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.calls = self.cached = self.input_tokens = self.evaluated = self.resets = 0
        self.latencies: list[float] = []
        self.scores: list[float] = []
        self.predictions: list[Any] = []

    def add(self, program: dspy.Module, chunk: Sequence[dspy.Example], llm: Any, cache: Path, reset: bool) -> None:
        """One ``evaluate()`` of ``chunk`` on the fresh DSPy cache dir ``cache``."""
        import llama_cpp

        runtime.configure(cache)
        counter = [0]
        if reset:
            llm.create_completion = resetting(llm, counter)  # an instance attribute shadows the method
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            ev = evaluate(program, chunk, metric, show_progress=False)
        finally:
            if reset:
                del llm.create_completion
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.evaluated += perf_counts(llm)
        summary = ev.summary()
        assert counter[0] == (summary.lm_calls - summary.cached_calls if reset else 0), "a reset was missed"
        self.resets += counter[0]
        self.calls += summary.lm_calls
        self.cached += summary.cached_calls
        self.input_tokens += summary.input_tokens
        self.latencies += [c.latency_s for c in ev.calls]
        self.scores += [r.score for r in ev.results]
        self.predictions += [r.prediction for r in ev.results]


def bench_evaluator(spec: ModelSpec, pool: ModelPool, examples: Sequence[dspy.Example],
                    demos: list[dict[str, Any]], caches: Path) -> dict[str, ModeRun]:
    """The normal evaluator path (KV prefix reuse) vs a reset before every completion. The examples run
    in chunks, each chunk in both modes back to back (alternating which goes first), so both modes see
    the same background load; every run gets a new, empty DSPy cache."""
    program = sentiment_program(spec, pool, demos)
    runtime.configure(caches / f"{spec.name.replace('/', '_')}-warmup")
    evaluate(program, examples[:2], metric, show_progress=False)  # load the step's model, build its processor
    llm = local.load(spec, slot=STEP).llm
    runs = {"reuse": ModeRun(), "reset": ModeRun()}
    for i in range(0, len(examples), EVAL_CHUNK):
        chunk = examples[i:i + EVAL_CHUNK]
        for mode in (("reuse", "reset") if (i // EVAL_CHUNK) % 2 == 0 else ("reset", "reuse")):
            cache = caches / f"{spec.name.replace('/', '_')}-{mode}-{i}"
            runs[mode].add(program, chunk, llm, cache, reset=mode == "reset")
    return runs


def fmt_s(values: Sequence[tuple[float, float]]) -> str:
    """Median wall seconds, median CPU seconds, and the first repeat's wall seconds."""
    wall, cpu = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
    return f"{wall:.3f} s wall, {cpu:.3f} s CPU (first: {values[0][0]:.3f} s wall)"


def eval_cell(run: ModeRun) -> str:
    n = len(run.scores)
    return (f"{n / run.wall:.2f} ex/s ({run.wall:.1f} s wall, {run.cpu / n:.2f} CPU s/ex); median call "
            f"{statistics.median(run.latencies) * 1000:.0f} ms; {run.evaluated / run.calls:.0f} prompt tok "
            f"evaluated/call; acc {statistics.mean(run.scores):.2f}")


def report(info: dict[str, str], gen: dict[str, Any], comp: dict[str, Any], evals: dict[str, dict[str, ModeRun]],
           load: tuple[tuple[float, ...], tuple[float, ...]], elapsed: float, args: argparse.Namespace) -> str:
    names = [spec.name for spec in MODELS]
    head = "| | " + " | ".join(f"`{n}`" for n in names) + " |\n|---|" + "---|" * len(names)

    def row(label: str, cell: Callable[[str], str]) -> str:
        return f"| {label} | " + " | ".join(cell(n) for n in names) + " |"

    def gen_cell(mode: str) -> Callable[[str], str]:
        return lambda n: (f"{gen[n][mode]['tok_s']:.1f} tok/s ({gen[n][mode]['tok_cpu_s']:.1f} tok/CPU-s); "
                          f"{gen[n][mode]['mean_tokens']:.1f} tok/call, {gen[n][mode]['at_cap']}/"
                          f"{gen[n][mode]['calls']} at cap")

    def ratio(n: str) -> str:
        reuse, reset = evals[n]["reuse"], evals[n]["reset"]
        return f"**{reset.wall / reuse.wall:.2f}×** wall, {reset.cpu / reuse.cpu:.2f}× CPU"

    def agreement(n: str) -> str:
        runs = evals[n]
        same = sum(a == b for a, b in zip(runs["reuse"].predictions, runs["reset"].predictions, strict=True))
        return f"{runs['reset'].resets}; {same}/{len(runs['reuse'].predictions)}"

    schemas = list(comp[names[0]]["build"])
    rows = [
        head,
        row(f"1. generation, unconstrained ({args.prompts} prompts, max_tokens {GEN_MAX_TOKENS})",
            gen_cell("unconstrained")),
        row("1. generation, JSON-Schema constrained", gen_cell("constrained")),
        row("1. constrained / unconstrained tok/s: overall (median per prompt); per CPU-s",
            lambda n: f"**{gen[n]['ratio_tok_s']:.2f}** ({gen[n]['paired_ratio']:.2f}); "
                      f"{gen[n]['ratio_tok_cpu_s']:.2f}"),
        row(f"2. `ConstraintCompiler`: tokenizer and vocabulary (median of {COMPILE_REPEATS})",
            lambda n: fmt_s(comp[n]["wrap"])),
        *[row(f"2. first-call compile, {schema} schema (median of {COMPILE_REPEATS})",
              lambda n, s=schema: fmt_s(comp[n]["build"][s])) for schema in schemas],
        *[row(f"2. cached `index()`, {schema} schema (median)",
              lambda n, s=schema: f"{statistics.median(comp[n]['hit'][s]) * 1e6:.0f} µs") for schema in schemas],
        row(f"3. evaluator, KV prefix reuse ({args.examples} ex, 4 demos)", lambda n: eval_cell(evals[n]["reuse"])),
        row("3. evaluator, `reset()` before every completion", lambda n: eval_cell(evals[n]["reset"])),
        row("3. reuse / reset examples/s", ratio),
        row("3. prompt tokens per call (DSPy usage)",
            lambda n: f"{evals[n]['reuse'].input_tokens / evals[n]['reuse'].calls:.0f}"),
        row("3. LM calls / cached calls: reuse; reset",
            lambda n: "; ".join(f"{r.calls}/{r.cached}" for r in evals[n].values())),
        row("3. resets injected; same predictions in both modes", agreement),
    ]
    machine_lines = "\n".join(f"- {k}: {v}" for k, v in info.items() if k != "threads")
    command = " ".join([COMMAND, *map(shlex.quote, sys.argv[1:])])
    pinned = f"; overridden by `--threads {args.threads}`" if args.threads is not None else ""
    busy = max(load[0][0], load[1][0]) > float(info["nproc"] or 1)
    warning = ("\n**The CPU was oversubscribed (1-min load above nproc) during this run: absolute times are far "
               "worse than on an idle machine, and prompt processing suffers more than generation.**\n"
               if busy else "")
    return f"""# Engine benchmark, {dt.date.today().isoformat()}

Command: `{command}` (took {elapsed / 60:.1f} min)

{machine_lines}
- llama.cpp threads per model: {info['threads']} (engine default: `$PROGOPT_THREADS`, else all cores = \
{DEFAULT_THREADS}, for decoding and prompt batches{pinned})
- load average (1/5/15 min) at start {load[0][0]:.2f}/{load[0][1]:.2f}/{load[0][2]:.2f}, at end \
{load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f}. Other work was sharing the CPU, so absolute numbers are
  noisy; the two sides of each ratio were measured interleaved (per prompt, per chunk of {EVAL_CHUNK} examples).
{warning}
{chr(10).join(rows)}

How each number was measured:
1. `LlamaEngine.complete` on {args.prompts} SST-2 test sentences, asking for a JSON object with a free-text
   `summary`; constrained calls send that JSON Schema as `response_format` (Outlines processor, built before
   timing). Each prompt is evaluated first by a 1-token call, so the timed calls reuse its KV prefix and
   their engine latency is nearly all generation. tok/s = completion tokens / engine seconds over all calls.
   No DSPy cache is involved.
2. A fresh `ConstraintCompiler(llm)` per repeat, timing the first `index()` of the JSON
   Schema that JSONAdapter sends for `programs/sentiment.py` (one enum field) and for `programs/entities.py`
   (a list of `{{text, type}}` objects), then a second, cached `index()`. The vocabulary is built once per
   compiler (the first row); each first `index()` compiles the schema's index.
3. `evaluate()` of the sentiment program from `build_program` with 4 label-balanced SST-2 train demos
   (JSONAdapter, constrained) on the first {args.examples} test examples, after a 2-example warm-up (model
   load, processor build). The examples run in chunks of {EVAL_CHUNK}, each chunk in both modes back to back,
   every `evaluate()` on a new empty DSPy cache directory. "reset" replaces the step's loaded
   `llama_cpp.Llama.create_completion` (the chat path calls it too) with one that calls `reset()` first.
   ex/s = examples / summed wall time of `evaluate()`; CPU s = process CPU time (all threads); "median call"
   = engine latency per LM call; "prompt tok evaluated" = llama.cpp's `n_p_eval` perf counter per call.
"""


def pin_threads(n: int) -> None:
    """Make every model this process loads use ``n`` threads for decoding and prompt batches."""
    os.environ[local.THREADS_ENV] = str(n)


def thread_counts() -> str:
    """Decode / prompt-batch threads of the loaded models, as llama.cpp got them."""
    counts = {(m.llm.n_threads, m.llm.n_threads_batch) for m in local._LOADED.values()}
    return ", ".join(f"{a} decode / {b} prompt-batch" for a, b in sorted(counts))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads per model for decoding and prompt batches (default: the engine's)")
    parser.add_argument("--prompts", type=int, default=GEN_PROMPTS, help="prompts for the generation benchmark")
    parser.add_argument("--examples", type=int, default=EVAL_EXAMPLES, help="examples per evaluator mode")
    parser.add_argument("--out", type=Path, default=None, help="report path (default: experiments/results/)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started, load_start = time.perf_counter(), os.getloadavg()
    if args.threads is not None:
        pin_threads(args.threads)  # before the first model load
    info = machine()
    log(f"machine: {info}")
    sentences = [ex.sentence for ex in TASK.load("test", limit=args.prompts)]
    examples = TASK.load("test", limit=args.examples)
    train = TASK.load("train")
    pos = [ex for ex in train if ex.sentiment == "positive"][:DEMOS_PER_CLASS]
    neg = [ex for ex in train if ex.sentiment == "negative"][:DEMOS_PER_CLASS]
    demos = [{"sentence": ex.sentence, "sentiment": ex.sentiment} for pair in zip(pos, neg, strict=True)
             for ex in pair]
    dspy.configure(track_usage=True)
    pool = ModelPool.default()
    gen, comp, evals = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        caches = Path(tmp)
        constraints = {
            "sentiment": program_constraint(Sentiment(), {"sentence": "fine"}, '{"sentiment": "positive"}',
                                            caches / "capture-sentiment"),
            "entities": program_constraint(EntityExtractor(), {"text": "EU rejects German call"},
                                           '{"entities": []}', caches / "capture-entities"),
        }
        for spec in MODELS:
            log(f"{spec.name}: generation ({time.perf_counter() - started:.0f} s)")
            gen[spec.name] = bench_generation(spec, sentences)
            log(f"{spec.name}: schema compile ({time.perf_counter() - started:.0f} s)")
            comp[spec.name] = bench_compile(spec, constraints)
            log(f"{spec.name}: evaluator ({time.perf_counter() - started:.0f} s)")
            evals[spec.name] = bench_evaluator(spec, pool, examples, demos, caches)
    info["threads"] = thread_counts()
    text = report(info, gen, comp, evals, (load_start, os.getloadavg()), time.perf_counter() - started, args)
    out = args.out or RESULTS_DIR / f"engine-{dt.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {out}")
    # Free the models while llama_cpp is still importable: freeing them during interpreter shutdown
    # prints "TypeError: 'NoneType' object is not callable" tracebacks from Llama.__del__.
    for model in local._LOADED.values():
        model.llm.close()


if __name__ == "__main__":
    main()
