"""Every malformed input gets a clear error naming file, line (or record) and field."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.data.readers import read_dataset
from thresher.errors import InputError

GOOD = '{"instruction": "a", "output": "b"}'


def _err(path, **kw) -> str:
    with pytest.raises(InputError) as info:
        read_dataset(path, **kw)
    return str(info.value)


def _jsonl(tmp_path, text: str | bytes, name="data.jsonl"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([GOOD, GOOD, '{"instruction": "a", "output": "b'], "data.jsonl:3: invalid JSON"),
        ([GOOD, '{"instruction": "a", "output": ["b"]}'], "data.jsonl:2: field 'output' is a list, expected a string"),
        ([GOOD, '{"instruction": "a"}'], "data.jsonl:2: field 'output' is missing or null"),
        (['{"instruction": "a", "output": 3}'], "data.jsonl:1: field 'output' is a number, expected a string"),
        ([GOOD, '{"instruction": "a", "output": NaN}'], "data.jsonl:2: non-standard JSON value NaN"),
        ([GOOD, "[1, 2]"], "data.jsonl:2: expected a JSON object per line, got a list"),
        ([GOOD, '{"instruction": "a", "output": "b"} {"x": 1}'], "data.jsonl:2: invalid JSON"),
        (['{"instruction": "a", "instruction": "c", "output": "b"}'], "data.jsonl:1: duplicate key 'instruction'"),
        (['{"instruction": "a", "input": 5, "output": "b"}'], "data.jsonl:1: field 'input' is a number"),
        ([GOOD, '{"instruction": "a", "output": "b", "category": ["x"]}', '{"instruction": "a", "output": "b", "category": "y"}'],
         "data.jsonl:3: field 'category' is a string, but a list on line 2"),
    ],
)
def test_jsonl_errors_name_line_and_field(tmp_path, lines, expected):
    assert _err(_jsonl(tmp_path, "\n".join(lines) + "\n")).startswith(str(tmp_path / expected.split(":")[0]) + ":" +
                                                                       expected.split(":", 1)[1].split(":")[0]) \
        and expected.split(": ", 1)[1] in _err(_jsonl(tmp_path, "\n".join(lines) + "\n"))


def test_unknown_role_messages(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
            {"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}]
    msg = _err(_jsonl(tmp_path, "\n".join(json.dumps(r) for r in rows)))
    assert msg.endswith("data.jsonl:2: field 'messages[1].role' has unknown role 'robot' "
                        "(expected system, developer, user, assistant, tool, function)")


def test_unknown_role_sharegpt(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "x"}, {"from": "bing", "value": "y"}]}]
    assert "data.jsonl:1: field 'conversations[1].from' has unknown role 'bing'" in _err(
        _jsonl(tmp_path, json.dumps(rows[0])))


def test_messages_content_wrong_type(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "x"}]}, {"messages": "hello"}]
    assert "data.jsonl:2: field 'messages'" in _err(_jsonl(tmp_path, "\n".join(json.dumps(r) for r in rows)))
    rows = [{"messages": []}]
    assert "e.jsonl:1: field 'messages' is an empty list" in _err(_jsonl(tmp_path, json.dumps(rows[0]), "e.jsonl"))


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"  \n\n \n", "empty")])
def test_empty_input(tmp_path, content, reason):
    assert reason in _err(_jsonl(tmp_path, content))


def test_unknown_schema(tmp_path):
    assert "unknown schema" in _err(_jsonl(tmp_path, '{"question": "a", "answer": "b"}\n'))


def test_invalid_utf8_and_nul(tmp_path):
    assert "data.jsonl:2: invalid UTF-8" in _err(_jsonl(tmp_path, GOOD.encode() + b'\n{"instruction": "\xff", "output": "b"}\n'))
    assert "bad.jsonl:2: NUL byte" in _err(_jsonl(tmp_path, GOOD.encode() + b'\n{"instruction": "\x00", "output": "b"}\n',
                                               "bad.jsonl"))


def test_absurd_nesting(tmp_path):
    deep = '{"instruction": "a", "output": "b", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert "data.jsonl:2: " in _err(_jsonl(tmp_path, GOOD + "\n" + deep + "\n"))


def test_duplicate_given_ids(tmp_path):
    rows = [{"id": "a", **json.loads(GOOD)}, {"id": "b", **json.loads(GOOD)}, {"id": "a", **json.loads(GOOD)}]
    assert "data.jsonl:3: duplicate id 'a' (first on line 1)" in _err(_jsonl(tmp_path, "\n".join(json.dumps(r) for r in rows)))


def test_json_not_a_list(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{"instruction": "a", "output": "b"}')
    assert "must be a list of records" in _err(p)
    p.write_text('[{"instruction": "a", "output": "b"}, 3]')
    assert "d.json: record 2: expected an object, got a number" in _err(p)
    p.write_text('[{"instruction": "a", "output": "b"}, {"instruction": "a", "output": 1}]')
    assert "d.json: record 2: field 'output' is a number" in _err(p)


def test_csv_errors(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("instruction,output\na,b\nc\n")
    assert "d.csv:3: ragged row: 1 fields, the header has 2" in _err(p)
    p.write_text("question,answer\na,b\n")
    assert "unknown schema" in _err(p)
    p.write_text("instruction,output\n")
    assert "no records" in _err(p)


def test_parquet_missing_field(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["x", None]}), p)
    assert "d.parquet: record 2: field 'output' is missing or null" in _err(p)


def test_missing_file(tmp_path):
    assert "no such file" in _err(tmp_path / "nope.jsonl")


def test_skip_mode_collects_rejects(tmp_path):
    lines = [GOOD, "{broken", '{"instruction": "a", "output": ["x"]}', GOOD.replace('"b"', '"c"'),
             '{"messages": 1}']
    res = read_dataset(_jsonl(tmp_path, "\n".join(lines)), on_error="skip")
    assert len(res.dataset) == 2
    assert res.dataset.origin_rows.tolist() == [1, 4]
    assert [r.location for r in res.rejects] == ["line 2", "line 3", "line 5"]
    assert "invalid JSON" in res.rejects[0].reason and res.rejects[0].raw == "{broken"
    assert res.rejects[1].field == "output"


def test_skip_mode_fast_path_rejects(tmp_path):
    # all lines parse in the fast path; one has a wrong type
    lines = [GOOD, '{"instruction": "a", "output": null}', GOOD]
    res = read_dataset(_jsonl(tmp_path, "\n".join(lines)), on_error="skip")
    assert len(res.dataset) == 2 and res.rejects[0].location == "line 2"
    assert res.rejects[0].raw == lines[1]
