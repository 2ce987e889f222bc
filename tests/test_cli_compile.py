"""`progopt compile` end to end on the local models, then `progopt validate` and `run` on its artifact."""

import json

import pytest

from optimizer.cli import main
from optimizer.records import CompileResult


@pytest.mark.slow
def test_cli_compile_writes_artifact_result_report_and_front_png(tmp_path, capsys):
    out = tmp_path / "sst2.json"
    code = main(["compile", "programs/sentiment.py:Sentiment", "--budget", "30", "--train-limit", "20",
                 "--val-limit", "6", "--limit", "6", "--minibatch", "3", "--proposer", "none", "--teacher", "none",
                 "--tracking-uri", "none", "--out", str(out)])
    assert code == 0
    result = CompileResult.model_validate_json(out.with_suffix(".result.json").read_text())
    assert result.spent["calls"] <= 30 and result.test
    assert out.with_suffix(".front.png").read_bytes()[:4] == b"\x89PNG"
    assert "Pareto front" in out.with_suffix(".report.md").read_text()
    assert main(["validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--input", json.dumps({"sentence": "a gorgeous , witty film ."})]) == 0
    prediction = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert prediction["sentiment"] in {"negative", "positive"}


def test_cli_reports_a_bad_data_row_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "fine", "label": "positive"}\n{"sentence": \n')
    code = main(["evaluate", "programs/sentiment.py:Sentiment", "--data", str(bad), "--inputs", "sentence",
                 "--map", "sentiment=label"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"progopt: invalid JSON (Expecting value at column 14), {bad} line 2"
