"""The sweep file: expansion (matrix, include, exclude, one DSPy cell per model), stable cell ids, the shipped
JSON Schema, and errors that name the key path and line before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimizer.cli import main
from optimizer.sweep.config import SweepConfigError, json_schema, load_sweep, run_order, select

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_quickstart_sweep_expands_to_twelve_cells_with_stable_ids():
    _, cells = load_sweep(ROOT / "experiments" / "sweeps" / "quickstart.yaml")
    _, again = load_sweep(ROOT / "experiments" / "sweeps" / "quickstart.yaml")
    assert len(cells) == 12 and [c.cell_id() for c in cells] == [c.cell_id() for c in again]
    dspy = [c for c in cells if c.optimizer == "LabeledFewShot"]
    assert len(dspy) == 8 and all(len(c.models) == 1 for c in dspy)  # one DSPy cell per pool model
    assert len({c.cell_id() for c in cells}) == 12 and len({c.group() for c in cells}) == 6  # seeds share a group


def test_include_adds_and_exclude_drops_and_editing_keeps_other_ids(tmp_path):
    base = """name: t
defaults: {budget: 50}
matrix:
  program: [{ref: programs/sentiment.py:Sentiment}, {ref: programs/news.py:NewsTopic}]
  seed: [0, 1]
"""
    _, cells = load_sweep(_write(tmp_path, base))
    edited = base + """exclude: [{program: {ref: programs/news.py:NewsTopic}, seed: 1}]
include: [{program: {ref: programs/sentiment.py:Sentiment}, optimizer: MIPROv2, models: [local/gemma3-270m]}]
"""
    _, more = load_sweep(_write(tmp_path, edited))
    ids = {c.cell_id() for c in cells}
    assert len(more) == 4 and len(ids & {c.cell_id() for c in more}) == 3
    assert any(c.optimizer == "MIPROv2" for c in more)


def test_the_head_to_head_sweep_pairs_every_dspy_optimizer_with_progopt_at_matched_budgets():
    _, cells = load_sweep(ROOT / "experiments" / "sweeps" / "vs-dspy.yaml")
    progopt = [c for c in cells if c.optimizer == "progopt"]
    assert len(cells) == 240 + 3 and len(progopt) == 92 and {c.budget_fraction for c in progopt} == {0.5, 1.0}
    chat = [c for c in progopt if "chat" in c.formats]  # the includes: CoNLL-2003 progopt with the chat format
    assert [(c.program.name, c.seed, c.label()) for c in chat] == [
        ("EntityExtractor", 0, "progopt@1xdspy-max(json,compact,chat)"),
        ("EntityExtractor", 0, "progopt@0.5xdspy-max(json,compact,chat)")]
    rerun = [c for c in cells if c.optimizer_args]  # includes: a DSPy cell rerun, later seeds' cells replaced
    assert [(c.optimizer, c.models, c.seed) for c in rerun] == [
        ("BootstrapFewShotWithRandomSearch", ("local/smollm2-135m",), 0),
        *[("BootstrapFewShotWithRandomSearch", (m,), s) for s in (1, 2)
          for m in ("local/smollm2-135m", "local/gemma3-270m")]]
    assert not [c for c in cells if c.program.name == "EntityExtractor" and c.seed > 0
                and c.optimizer == "BootstrapFewShotWithRandomSearch" and not c.optimizer_args]
    assert rerun[0].label() == "BootstrapFewShotWithRandomSearch[smollm2-135m](max_errors=100000)"
    assert all(c.budget_from == "dspy-max" and c.label().startswith("progopt@") for c in progopt)
    assert {c.final_top for c in progopt} == {0, 5, None}  # with and without the final selection, and by budget
    one = [c for c in cells if c.seed == 0 and c.program == cells[0].program]
    assert len({(c.label(), c.models) for c in one}) == len(one)  # every contender is told apart in the report
    assert run_order(cells)[-1].optimizer == "progopt"  # matched budgets run after the DSPy cells


def test_only_filters_select_a_piece_of_the_sweep_and_name_a_bad_filter():
    _, cells = load_sweep(ROOT / "experiments" / "sweeps" / "vs-dspy.yaml")
    piece = select(cells, ["seed=0", "program=Sentiment", "optimizer=ZeroShot,GEPA"])
    assert len(piece) == 4 and {c.optimizer for c in piece} == {"ZeroShot", "GEPA"}  # one cell per model
    assert len(select(cells, ["models=local/gemma3-270m", "seed=1"])) == 5 * (5 + 6)  # progopt cells use the pool
    open_cells = select(cells, ["space=by-budget", "seed=0"])
    assert len(open_cells) == 5 * 2 and all(c.open_space() and c.label().endswith("+auto") for c in open_cells)
    assert not any(c.open_space() for c in select(cells, ["space=given"]))
    for bad in ("seed", "color=red", "seed=7", "seed="):
        with pytest.raises(ValueError, match="--only"):
            select(cells, [bad])


@pytest.mark.parametrize(("text", "key_path", "line"), [
    ("name: t\nmatrix:\n  seed: [0, -1]\n  program: [{ref: a.py:A}]\n", "matrix.seed[1]", 3),
    ("name: t\ndefaults:\n  budget: 10\n  formats: [json, xml]\nmatrix: {program: [{ref: a.py:A}]}\n",
     "defaults.formats[1]", 4),
    ("name: t\ndefaults: {buget: 10}\nmatrix: {program: [{ref: a.py:A}]}\n", "defaults", 2),
    ("name: t\nmatrix: {program: [{ref: a.py:A}]}\ninclude:\n  - {program: {ref: a.py:A}, strategies: [sc1]}\n",
     "include[0].strategies", 4),
    ("name: t\nmatrix: {program: [{ref: a.py:A}]}\nworkers: 3\n", "workers", 3),
    ("name: t\nmatrix: {program: [{ref: a.py:A}]\n", "", 3),
    ("name: t\nmatrix: {seed: [1]}\n", "program", 2),
    ("name: t\nmatrix:\n  program: [{ref: a.py:A}]\n  models: [[local/gemma3-270m], [local/gemma-270m]]\n",
     "matrix.models[1]", 4),
    ("name: t\nmatrix:\n  program: [{ref: a.py:A}]\n  seed: [0]\n  seed: [1]\n", "matrix.seed", 5),  # not merged
    ("name: t\nmatrix:\n  program: [{ref: a.py:A, ref: b.py:B}]\n", "matrix.program[0].ref", 3),
    ("name: t\nmatrix:\n  program: [{ref: a.py:A}]\n  seed: [" + "9" * 5000 + "]\n", "matrix.seed[0]", 4),
])
def test_a_bad_file_names_the_key_path_and_line(tmp_path, text, key_path, line):
    path = _write(tmp_path, text)
    with pytest.raises(SweepConfigError) as info:
        load_sweep(path)
    assert info.value.key_path == key_path and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_the_cli_refuses_a_bad_file_before_running_anything(tmp_path, capsys):
    path = _write(tmp_path, "name: t\noutput: " + str(tmp_path / "out") + "\nmatrix: {seed: [x]}\n")
    assert main(["sweep", str(path), "--tracking-uri", "none"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: matrix.seed[0]" in err and not (tmp_path / "out").exists()


def test_the_shipped_json_schema_is_the_models_schema():
    shipped = json.loads((ROOT / "schemas" / "sweep.v1.schema.json").read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(json_schema()))


SENTIMENT = "{ref: programs/sentiment.py:Sentiment}"


@pytest.mark.parametrize(("text", "key_path", "line", "message"), [
    (f"name: t\nmatrix:\n  program:\n    - {SENTIMENT}\n    - {{ref: programs/nosuch.py:Program}}\n",
     "matrix.program[1].ref", 5, "the program does not resolve"),
    (f"name: t\nmatrix:\n  program: [{SENTIMENT}]\n  seed: [0]\ninclude:\n  - {{program: {{ref: "
     "programs/sentiment.py:NoSuchClass}, optimizer: LabeledFewShot}\n", "include[0].program.ref", 6,
     "has no attribute"),
    ("name: t\ndefaults:\n  program: {ref: programs/sentiment.py:TASK}\nmatrix: {seed: [0, 1]}\n",
     "defaults.program.ref", 3, "is not a dspy.Module class"),
    ("name: t\nmatrix:\n  program: [{ref: programs/sentiment.py:Sentiment, metric: nosuch.py:score}]\n",
     "matrix.program[0].metric", 3, "the metric does not resolve"),
    ("name: t\nmatrix:\n  program: [{ref: programs/sentiment.py:Sentiment, train: missing.jsonl}]\n",
     "matrix.program[0].train", 3, "cannot be read"),
    (f"name: t\nmatrix:\n  program: [{SENTIMENT}]\n  optimizer: [BootstrapFewShot]\n  optimizer_args:\n"
     "    - {max_rounds: 1, max_bootstraped_demos: 2}\n", "matrix.optimizer_args[0].max_bootstraped_demos", 6,
     "is not an argument of dspy.BootstrapFewShot"),
    (f"name: t\nmatrix:\n  program: [{SENTIMENT}]\n  optimizer: [MIPROv2]\n  optimizer_args: [{{metric: x}}]\n",
     "matrix.optimizer_args[0].metric", 5, "is set by the sweep"),
    (f"name: t\nmatrix:\n  program: [{SENTIMENT}]\n  variant:\n    - {{optimizer: progopt, budget_from: dspy-max}}\n",
     "matrix.variant[0].budget_from", 5, "runs no DSPy optimizer"),
])
def test_a_cell_that_could_not_start_is_refused_before_any_runs(tmp_path, monkeypatch, text, key_path, line, message):
    monkeypatch.chdir(ROOT)  # program references and data paths resolve from here, as the cells resolve them
    path = _write(tmp_path, text)
    with pytest.raises(SweepConfigError, match=message) as info:
        load_sweep(path)
    assert info.value.key_path == key_path and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: {key_path}: ")


@pytest.mark.parametrize("optimizer", ["progopt", "LabeledFewShot"])
def test_the_cli_refuses_a_sweep_whose_program_does_not_resolve_with_no_cell_started(tmp_path, capsys, monkeypatch,
                                                                                    optimizer):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    path = _write(tmp_path, f"name: t\noutput: {out}\nmatrix:\n  program: [{{ref: programs/sentimnet.py:Sentiment}}]\n"
                  f"  optimizer: [{optimizer}]\n")
    assert main(["sweep", str(path), "--tracking-uri", "none", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"progopt: {path}:4: matrix.program[0].ref: the program does not resolve")
    assert "sentimnet.py" in err and "unexpected" not in err and not out.exists()


def test_yaml_nested_past_the_parser_is_a_sweep_config_error(tmp_path):
    path = _write(tmp_path, "name: t\nmatrix: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SweepConfigError, match="nested too deeply"):
        load_sweep(path)


def test_committed_cells_read_back_with_their_ids_and_meaning():
    """A stored dump predating a setting ran without it: it keeps its id and is not read as an open cell."""
    from optimizer.sweep.cell import read_outcome

    cells = [o for f in sorted((ROOT / "experiments" / "results" / "vs-dspy-2026-11-30" / "cells").iterdir())
             if (o := read_outcome(f))]
    assert len(cells) >= 140 and all(c.settings.cell_id() == c.cell_id for c in cells)
    opened = {c.cell_id for c in cells if c.settings.open_space()}
    assert opened <= {"ac966114e817", "02f581d9c3bc", "c5c7cfbfab27", "e0fc652990bb"}  # the by-budget cells
