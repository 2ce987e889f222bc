"""Every bad invocation found by probing (issue 14) ends in one line ``progopt: <what>, <where>`` and exit 2,
before any model is called or anything is stored; outputs are never truncated or written over an input."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from optimizer.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = str(ROOT / "tests" / "fixtures" / "compiled-program.v1.json")
PROGRAM = "programs/sentiment.py:Sentiment"
UNKNOWN_MODEL = ("unknown model {!r}: use an embedded model (local/smollm2-135m, local/gemma3-270m) or a LiteLLM "
                 "provider/model string such as openai/gpt-4o-mini, --models")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "d.jsonl").mkdir()
    (tmp_path / "outdir").mkdir()
    (tmp_path / "in.jsonl").write_text('{"sentence": "a film"}\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "prev.jsonl").write_text("keep\n")
    return tmp_path


CASES = [
    (["run", FIXTURE, "--inputs", "{t}/missing.jsonl", "--out", "{t}/o.jsonl"], "file not found, {t}/missing.jsonl"),
    (["run", FIXTURE, "--inputs", "{t}/d.jsonl", "--out", "{t}/o.jsonl"], "is a directory, not a file, {t}/d.jsonl"),
    (["run", FIXTURE, "--inputs", "{t}/in.jsonl", "--out", "{t}/outdir"],
     "is a directory, not a file, --out {t}/outdir"),
    (["run", FIXTURE, "--inputs", "{t}/in.jsonl", "--out", "/proc/o.jsonl"],
     "cannot write there (No such file or directory), --out /proc/o.jsonl"),
    (["run", FIXTURE, "--inputs", "{t}/in.jsonl", "--out", "{t}/in.jsonl"],
     "would overwrite the input {t}/in.jsonl, --out {t}/in.jsonl"),
    (["run", FIXTURE, "--inputs", "{t}/empty.jsonl", "--out", "{t}/prev.jsonl"], "no rows, {t}/empty.jsonl"),
    (["run", FIXTURE, "--inputs", "{t}/in.jsonl"], "needs --out FILE.jsonl, --inputs {t}/in.jsonl"),
    (["run", FIXTURE, "--input", "{{"], "not valid JSON (Expecting property name enclosed in double quotes at "
     "column 2), --input"),
    (["compile", PROGRAM, "--budget", "0", "--out", "{t}/c.json"], "must be > 0 (got 0), --budget"),
    (["compile", PROGRAM, "--budget", "-5", "--out", "{t}/c.json"], "must be > 0 (got -5), --budget"),
    (["compile", PROGRAM, "--budget-cost", "nan", "--out", "{t}/c.json"], "must be > 0 (got nan), --budget-cost"),
    (["compile", PROGRAM, "--budget", "ten", "--out", "{t}/c.json"], "expected a whole number (got 'ten'), --budget"),
    (["compile", PROGRAM, "--strategies", "direct", "sc1", "--out", "{t}/c.json"],
     "unknown strategy 'sc1': use direct, cot, scK (K >= 2), score, score-cc or score-bc, --strategies"),
    (["compile", PROGRAM, "--formats", "xml", "--out", "{t}/c.json"],
     "invalid choice: 'xml' (choose from 'json', 'chat', 'compact'), --formats"),
    (["compile", PROGRAM, "--models", "smolm2", "--out", "{t}/c.json"], UNKNOWN_MODEL.format("smolm2")),
    (["compile", PROGRAM, "--models", "local/smolm2", "--out", "{t}/c.json"], UNKNOWN_MODEL.format("local/smolm2")),
    (["compile", PROGRAM, "--models", "nosuchprovider/gpt", "--out", "{t}/c.json"],
     UNKNOWN_MODEL.format("nosuchprovider/gpt")),
    (["compile", PROGRAM, "--storage", "nonsense", "--tracking-uri", "none", "--out", "{t}/c.json"],
     "cannot open the Optuna storage (Could not parse SQLAlchemy URL from given URL string), --storage nonsense"),
    (["compile", PROGRAM, "--storage", "sqlite:////proc/x/y.db", "--tracking-uri", "none", "--out", "{t}/c.json"],
     "cannot open the Optuna storage ((sqlite3.OperationalError) unable to open database file), "
     "--storage sqlite:////proc/x/y.db"),
    (["compile", PROGRAM, "--tracking-uri", "nonsense://x", "--out", "{t}/c.json"],
     "cannot open the MLflow tracking store (Model registry functionality is unavailable; got unsupported URI "
     "'nonsense://x' for model registry data storage), --tracking-uri nonsense://x"),
    (["compile", PROGRAM, "--out", "{t}/outdir"], "is a directory, not a file, --out {t}/outdir"),
    (["compile", PROGRAM, "--data", "{t}/in.jsonl", "--out", "{t}/in.jsonl"],
     "would overwrite the input {t}/in.jsonl, --out {t}/in.jsonl"),
    (["compile", PROGRAM, "--train", "{t}/d.jsonl", "--tracking-uri", "none", "--out", "{t}/c.json"],
     "is a directory, not a file, {t}/d.jsonl"),
    (["evaluate", PROGRAM, "--limit", "-1"], "must be >= 0 (got -1), --limit"),
    (["evaluate", PROGRAM, "--map", "sentiment"], "expects FIELD=COLUMN, --map sentiment"),
    (["evaluate", PROGRAM, "--data", "{t}/missing.csv"], "file not found, {t}/missing.csv"),
    (["evaluate", PROGRAM, "--data", "{t}/in.jsonl", "--json", "{t}/in.jsonl"],
     "would overwrite the input {t}/in.jsonl, --json {t}/in.jsonl"),
    (["frobnicate"],
     "invalid choice: 'frobnicate' (choose from 'evaluate', 'compile', 'run', 'validate', 'show', 'export', "
     "'sweep'), command"),
    (["compile"], "the following arguments are required: program, progopt compile (see --help)"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a[:1] + a[2:4]) for a, _ in CASES])
def test_a_bad_invocation_prints_one_line_and_exits_2(files, capsys, argv, message):
    before = {p: p.read_bytes() for p in files.iterdir() if p.is_file()}
    assert main([a.format(t=files) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "progopt: " + message.format(t=files)
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in files.iterdir() if p.is_file()} == before  # nothing written or truncated
    assert not list(files.glob("*.db")) and not list(files.glob(".*.tmp"))


def test_debug_adds_the_traceback(capsys):
    assert main(["evaluate", PROGRAM, "--limit", "-1", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("progopt: must be >= 0 (got -1), --limit")


def test_a_litellm_provider_model_string_is_accepted():
    from optimizer.cli import build_parser

    args = build_parser().parse_args(["evaluate", PROGRAM, "--models", "openai/gpt-4o-mini", "local/gemma3-270m"])
    assert args.models == ["openai/gpt-4o-mini", "local/gemma3-270m"]


@contextmanager
def _fifo(path: Path) -> Iterator[Path]:
    """A named pipe with no writer. Should a command open it anyway, a helper thread's writer lets that open
    return (and the read end at once), so the test fails on its message instead of hanging."""
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: open(path, "wb").close(), daemon=True)
    writer.start()
    try:
        yield path
    finally:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # releases the writer if nothing opened the pipe
        writer.join(5)
        os.close(fd)


FIFO_CASES = [
    (["run", FIXTURE, "--inputs", "{t}/p.jsonl", "--out", "{t}/o.jsonl"],
     "is a named pipe (FIFO), not a regular file, {t}/p.jsonl"),
    (["run", "{t}/p.json", "--input", '{{"sentence": "a film"}}'],
     "cannot read the file: is a named pipe (FIFO), not a regular file, {t}/p.json at $"),
    (["evaluate", PROGRAM, "--data", "{t}/p.jsonl"], "is a named pipe (FIFO), not a regular file, {t}/p.jsonl"),
    (["compile", PROGRAM, "--train", "{t}/p.jsonl", "--tracking-uri", "none", "--out", "{t}/c.json"],
     "is a named pipe (FIFO), not a regular file, {t}/p.jsonl"),
    (["sweep", "{t}/p.yaml", "--tracking-uri", "none"],
     "{t}/p.yaml: $: cannot read the file: is a named pipe (FIFO), not a regular file"),
]


@pytest.mark.parametrize(("argv", "message"), FIFO_CASES, ids=[" ".join(a[:1]) for a, _ in FIFO_CASES])
def test_a_named_pipe_given_as_an_input_file_is_refused_without_blocking(tmp_path, capsys, argv, message):
    name = next(a for a in argv if a.startswith("{t}/p.")).removeprefix("{t}/")
    with _fifo(tmp_path / name):
        assert main([a.format(t=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "progopt: " + message.format(t=tmp_path)
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "c.json").exists()


def test_validate_refuses_a_named_pipe_as_the_artifact(tmp_path, capsys):
    with _fifo(tmp_path / "p.json") as fifo:
        assert main(["validate", str(fifo)]) == 2
    assert capsys.readouterr().err.strip() == (f"INVALID ArtifactFormatError: {fifo}: $: cannot read the file: is a "
                                               "named pipe (FIFO), not a regular file")
