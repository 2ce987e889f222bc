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


def _load(path, **kw):
    return load_examples(path, inputs=kw.pop("inputs", ["sentence"]), **kw)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    body = '{"sentence": "good"}\n' if suffix == ".jsonl" else "sentence\ngood\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert _load(path)[0].sentence == "good"


@pytest.mark.parametrize(("content", "line", "message"), [
    (b'{"sentence": "a"}\n{"sentence": "\xff"}\n', 2, r"line 2: not UTF-8 \(byte 0xff at column 15\)"),
    (b'{"sentence": "a"}\n\n' + b"[" * 5000 + b"\n", 3, "line 3: JSON nested deeper than 64 levels"),
    (b'{"sentence": ' + b'{"a": ' * 70 + b"1" + b"}" * 71 + b"\n", 1, "nested deeper than 64"),
    (b'{"sentence": ' + b"9" * 5000 + b"}\n", 1, "line 1, field 'sentence': an integer of 5000 digits is out of range"),
    (b'{"sentence": NaN}\n', 1, "line 1, field 'sentence': NaN is not a JSON number"),
    (b'["sentence"]\n', 1, "expected a JSON object, got list"),
])
def test_jsonl_problems_name_the_physical_line(tmp_path, content, line, message):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        _load(path)
    assert err.value.line == line


@pytest.mark.parametrize(("content", "line", "message"), [
    ('sentence,label\n"good,positive\nbad,negative\n', 2, r"malformed CSV \(unexpected end of data\)"),
    ('sentence,label\n"a\nb",positive\nbad,negative,extra\n', 4, "3 values but the header has 2 columns"),
    ("sentence,label\ngood\n", 2, "1 values but the header has 2 columns"),
    ('sentence,label\n"x"y,positive\n', 2, "malformed CSV"),
    ("sentence,sentence\ngood,bad\n", 1, "appears twice in the header"),
    ("sentence,\ngood,bad\n", 1, "header column 2 has no name"),
    ("sentence,label\n" + "x" * 200_000 + ",positive\n", 2, "field larger than field limit"),
])
def test_strict_csv_names_the_physical_line(tmp_path, content, line, message):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        _load(path)
    assert err.value.line == line


def test_csv_line_numbers_count_physical_lines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('sentence,label\n"multi\nline",positive\n\nbad,\n')
    with pytest.raises(DataError) as err:
        _load(path, mapping={"sentiment": "label"})
    assert (err.value.line, err.value.field) == (5, "label")


@pytest.mark.parametrize("row", [{"sentence": "a", "base": {"x": 1}}, {"sentence": "a", "inputs": "b"},
                                 {"sentence": "a", "dspy_uuid": "b"}])
def test_reserved_field_names_are_refused_by_name(tmp_path, row):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    name = next(k for k in row if k != "sentence")
    with pytest.raises(DataError, match=f"line 1, field '{name}': is a name dspy.Example reserves"):
        _load(path)


def test_a_reserved_column_can_be_mapped_away_and_a_colliding_rename_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"sentence": "a", "base": "b"}) + "\n")
    assert _load(path, mapping={"basis": "base"})[0].basis == "b"
    path.write_text(json.dumps({"sentence": "a", "label": "b", "sentiment": "c"}) + "\n")
    with pytest.raises(DataError, match="field 'sentiment': column collides"):
        _load(path, mapping={"sentiment": "label"})


def test_directories_missing_files_and_negative_limits_are_data_errors(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        _load(tmp_path / "dir.jsonl")
    with pytest.raises(DataError, match="file not found"):
        _load(tmp_path / "none.csv")
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence": "a"}\n{"sentence": "b"}\n')
    with pytest.raises(DataError, match="limit must be 0 or more, got -1"):
        _load(path, limit=-1)
    assert len(_load(path, limit=5)) == 2


def test_a_task_reads_the_data_folder_beside_the_module_that_made_it(tmp_path, monkeypatch):
    import runpy

    (tmp_path / "data" / "mine").mkdir(parents=True)
    (tmp_path / "data" / "mine" / "val.jsonl").write_text('{"q": "hi", "a": "x"}\n', encoding="utf-8")
    (tmp_path / "prog.py").write_text('from optimizer.data import Task\nTASK = Task("mine", inputs=["q"])\n')
    monkeypatch.chdir(tmp_path.parent)  # not the module's folder: the root follows the module, not the cwd
    task = runpy.run_path(str(tmp_path / "prog.py"))["TASK"]
    assert task.root == (tmp_path / "data").resolve() and task.load("val")[0].q == "hi"


@pytest.mark.parametrize(("line", "field", "message"), [
    ('{"sentence": "a", "score": 1e400}', "score", "the number 1e400 is out of range"),
    ('{"sentence": "a", "score": -1E+999}', "score", "the number -1E[+]999 is out of range"),
    ('{"sentence": "a", "label": [1, Infinity]}', "label", "Infinity is not a JSON number"),
    ('{"sentence": "a", "label": {"x": -Infinity}}', "label", "-Infinity is not a JSON number"),
    ('{"sentence": "a", "label": NaN}', "label", "NaN is not a JSON number"),
    ('{"sentence": "a", "sentence": "b"}', "sentence", "the key appears twice"),
    ('{"sentence": "a", "label": {"k": 1, "k": 2}}', "k", "the key appears twice"),
    ('{"sentence": "a\\ud800"}', "sentence", "lone surrogate"),
    ('{"sentence": "a", "\\udc00": 1}', "\udc00", "lone surrogate"),
    ('{"sentence": "   "}', "sentence", r"empty \(whitespace only\)"),
    ('{"sentence": "\\t\\n"}', "sentence", r"empty \(whitespace only\)"),
    ('{"sentence": []}', "sentence", r"empty \(\[\]\)"),
    ('{"sentence": {}}', "sentence", r"empty \(\{\}\)"),
    ('{"sentence": null}', "sentence", "missing or empty"),
])
def test_non_finite_numbers_duplicate_keys_surrogates_and_blank_values_are_refused(tmp_path, line, field, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"sentence": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        _load(path)
    assert (err.value.line, err.value.field, err.value.path) == (2, field, str(path))


def test_a_blank_csv_value_of_a_required_field_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\ngood,positive\n   ,negative\n")
    with pytest.raises(DataError, match=r"line 3, field 'sentence': empty \(whitespace only\)"):
        _load(path)
    path.write_text("sentence,label\ngood,  \n")  # a blank value of a field that is not required is kept
    assert _load(path)[0].label == "  "


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_fifo_is_refused_before_it_is_opened(tmp_path, suffix):
    import os

    fifo = tmp_path / f"d{suffix}"
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    with pytest.raises(DataError, match=r"is a named pipe \(FIFO\), not a regular file") as err:
        _load(fifo)
    assert err.value.path == str(fifo) and err.value.line is None
