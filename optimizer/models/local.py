"""One ``llama_cpp.Llama`` per model file (and KV slot) per process, shared, with a lock and the file's
constraint compiler.

The cache of loaded model files (``_LOADED`` instances and ``_COMPILERS``, one constraint compiler per
file) lives for the process; entries are never evicted, and the models are closed at exit."""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizer.models.constrain import ConstraintCompiler
from optimizer.models.files import resolve
from optimizer.models.spec import ModelSpec

THREADS_ENV = "PROGOPT_THREADS"


def n_threads() -> int:
    """llama.cpp threads per call (generation and prompt batches): ``$PROGOPT_THREADS``, else all cores.
    On a CPU shared with other model processes, 1 is much faster: llama.cpp's threads spin-wait."""
    return int(os.environ.get(THREADS_ENV) or os.cpu_count() or 1)


@dataclass
class LocalModel:
    """A loaded model. ``lock`` serialises calls: llama.cpp is not thread-safe, and consecutive calls
    on one instance reuse the KV cache of their shared prompt prefix."""

    llm: Any
    compiler: ConstraintCompiler
    lock: threading.Lock = field(default_factory=threading.Lock)
    _formatter: Any = None

    def chat_formatter(self) -> Any:
        """The chat-template formatter of a chat model, built on first use (call under ``lock``)."""
        if self._formatter is None:
            from optimizer.models.decode import chat_formatter

            self._formatter = chat_formatter(self.llm)
        return self._formatter


_LOADED: dict[tuple[str, int, bool, str | None], LocalModel] = {}
_COMPILERS: dict[str, ConstraintCompiler] = {}  # by model file: the vocabulary and compiled constraints
_LOAD_LOCK = threading.Lock()


def gguf_path(spec: ModelSpec) -> Path:
    """``spec``'s model file, resolved and verified once per process (see :func:`files.resolve`)."""
    if not spec.gguf:
        raise ValueError(f"model {spec.name!r}: a local model needs `gguf` (an embedded key or a path)")
    try:
        return resolve(spec.gguf)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"model {spec.name!r}: {exc}") from exc


def load(spec: ModelSpec, slot: str | None = None) -> LocalModel:
    """The process-wide instance for ``spec``'s file and context size, loaded on first use.

    ``slot`` (the program step) gives each step its own instance, so a two-step program on one model
    keeps both steps' prompt prefixes warm instead of evicting one with the other on every example.
    Weights are memory-mapped, so a second instance costs little beyond its KV cache; the vocabulary and
    compiled constraints are shared by all instances of a file."""
    path = str(gguf_path(spec))
    key = (path, spec.n_ctx, spec.chat, slot)
    with _LOAD_LOCK:
        if key not in _LOADED:
            import llama_cpp

            threads = n_threads()
            llm = llama_cpp.Llama(path, n_ctx=spec.n_ctx, n_threads=threads, n_threads_batch=threads,
                                  verbose=False)
            if path not in _COMPILERS:
                _COMPILERS[path] = ConstraintCompiler(llm)
            _LOADED[key] = LocalModel(llm, _COMPILERS[path])
        return _LOADED[key]


@atexit.register
def _close_all() -> None:
    """Free the models before interpreter teardown (llama-cpp-python's __del__ fails once modules are gone)."""
    for model in _LOADED.values():
        model.llm.close()
    _LOADED.clear()
    _COMPILERS.clear()
