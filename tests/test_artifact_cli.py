"""``progopt run`` and ``progopt validate`` on the committed v1 fixture (SmolLM2, a few real calls)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optimizer.cli import build_parser
from programs.sentiment import TASK as SST2

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "compiled-program.v1.json"


def progopt(*argv: str) -> int:
    """Run a subcommand in this process (keeping the session's DSPy cache)."""
    args = build_parser().parse_args(argv)
    return args.func(args)


@pytest.mark.slow
def test_run_one_input_prints_the_prediction_as_json(capsys):
    assert progopt("run", str(FIXTURE), "--input", json.dumps({"sentence": "a gorgeous , witty film"})) == 0
    assert json.loads(capsys.readouterr().out)["sentiment"] in {"negative", "positive"}


@pytest.mark.slow
def test_run_a_jsonl_file_writes_one_prediction_per_line_in_order(tmp_path):
    rows = [dict(ex.items()) for ex in SST2.load("test", limit=3)]  # extra keys (label, idx) are ignored
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert progopt("run", str(FIXTURE), "--inputs", str(source), "--out", str(out)) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 and all(line["sentiment"] in {"negative", "positive"} for line in lines)


def test_run_refuses_unknown_input_fields_before_calling_a_model():
    with pytest.raises(ValueError, match=r"inputs \['sentence'\] \(unknown: \['text'\]\)"):
        progopt("run", str(FIXTURE), "--input", '{"text": "a film"}')


def test_validate_prints_ok_and_a_summary(capsys):
    assert progopt("validate", str(FIXTURE)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {FIXTURE}") and "classify: local/smollm2-135m" in out and "validation score" in out


def test_validate_exits_2_naming_the_file_and_json_path(tmp_path):
    broken = tmp_path / "broken.json"
    shutil.copy(FIXTURE, broken)
    doc = json.loads(broken.read_text())
    doc["steps"]["classify"]["model"]["name"] = ""
    broken.write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-m", "optimizer.cli", "--cache-dir", str(tmp_path / "cache"),
                           "validate", str(broken)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"{broken}: steps.classify.model.name:" in proc.stderr and proc.stdout == ""
