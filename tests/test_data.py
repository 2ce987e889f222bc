import json

import pytest

from optimizer.data import DataError, dataset_hash, load_examples
from programs.sentiment import TASK


def test_jsonl_mapping_renames_columns_and_sets_inputs(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"sentence": "good", "label": "positive"}) + "\n")
    (ex,) = load_examples(path, inputs=["sentence"], mapping={"sentiment": "label"})
    assert ex.sentiment == "positive" and dict(ex.inputs()) == {"sentence": "good"}


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence": "a", "label": "x"}\n{"sentence": "b", \n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: invalid JSON"):
        load_examples(path, inputs=["sentence"])


def test_missing_field_names_file_line_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\ngood,positive\nbad,\n")
    with pytest.raises(DataError) as err:
        load_examples(path, inputs=["sentence"], mapping={"sentiment": "label"})
    assert err.value.line == 3 and err.value.field == "label" and "d.csv" in str(err.value)


def test_unsupported_suffix_is_refused(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_examples(path, inputs=["x"])


def test_shipped_subset_loads_and_hash_is_stable():
    rows = TASK.load("test", limit=200)
    assert len(rows) == 200 and {r.sentiment for r in rows} == {"negative", "positive"}
    assert dataset_hash(rows) == dataset_hash(TASK.load("test", limit=200))
    assert dataset_hash(rows) != dataset_hash(rows[:-1])
