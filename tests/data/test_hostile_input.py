"""Inputs that used to crash or hang: lone surrogates, FIFOs, broken HF folders, unreadable files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.data.readers import read_dataset
from thresher.errors import InputError

GOOD = '{"instruction": "a", "output": "b"}'


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("ascii"))
    return path


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83d", "\\ude00y"])
def test_lone_surrogate_is_an_error_naming_line_and_field(tmp_path, escape):
    path = _write(tmp_path / "data.jsonl", GOOD + "\n" + '{"instruction": "a", "output": "' + escape + '"}\n')
    with pytest.raises(InputError) as info:
        read_dataset(path)
    assert info.value.line == 2 and info.value.field == "output"
    assert str(info.value).startswith(f"{path}:2: field 'output' holds a lone surrogate \\ud")


def test_a_valid_surrogate_pair_is_read(tmp_path):
    path = _write(tmp_path / "data.jsonl", '{"instruction": "smile \\ud83d\\ude00", "output": "b"}\n')
    assert read_dataset(path).dataset.column("prompt").to_pylist() == ["smile \U0001F600"]


def test_lone_surrogate_in_a_nested_field_and_a_key(tmp_path):
    rows = ['{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\udc00"}]}',
            '{"instruction": "a", "output": "b", "meta\\ud800": 1}']
    with pytest.raises(InputError, match=r"field 'messages\[1\]\.content' holds a lone surrogate"):
        read_dataset(_write(tmp_path / "chat.jsonl", rows[0] + "\n"))
    with pytest.raises(InputError, match=r":1: field 'meta\\ud800' holds"):
        read_dataset(_write(tmp_path / "key.jsonl", rows[1] + "\n"))


def test_lone_surrogate_in_a_json_array(tmp_path):
    path = _write(tmp_path / "rows.json", "[" + GOOD + ', {"instruction": "\\ud800", "output": "b"}]')
    with pytest.raises(InputError, match=r"rows.json: record 2: field 'instruction' holds a lone surrogate"):
        read_dataset(path)


def test_on_error_skip_skips_surrogate_rows(tmp_path):
    path = _write(tmp_path / "data.jsonl", GOOD + "\n" + '{"instruction": "\\ud800", "output": "b"}\n' + GOOD + "\n")
    result = read_dataset(path, on_error="skip")
    assert len(result.dataset) == 2 and result.dataset.origin_rows.tolist() == [1, 3]
    assert [r.location for r in result.rejects] == ["line 2"] and result.rejects[0].field == "instruction"
    json.dumps([r.to_json() for r in result.rejects], ensure_ascii=False).encode("utf-8")  # writable as UTF-8


def test_surrogates_through_the_cli(tmp_path, capsys):
    from thresher.cli.app import main

    path = _write(tmp_path / "data.jsonl", GOOD + "\n" + '{"instruction": "\\ud800", "output": "b"}\n')
    for args in (["inspect", path], ["sample", path, "-o", tmp_path / "o.jsonl", "--n", "1"]):
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip() == \
            f"error: {path}:2: field 'instruction' holds a lone surrogate \\ud800 (a JSON escape that is not " \
            "valid Unicode; fix the program that wrote the file)"
    with pytest.raises(SystemExit) as info:
        main(["sample", str(path), "-o", str(tmp_path / "o.jsonl"), "--n", "1", "--on-error", "skip"])
    assert info.value.code == 0
    assert (tmp_path / "o.jsonl").read_text().startswith(GOOD[:-1] + ", ")  # the good row, _pi/_weight appended
    assert json.loads((tmp_path / "o.rejects.jsonl").read_text())["field"] == "instruction"


def test_a_fifo_input_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pool.jsonl"
    os.mkfifo(fifo)
    # in a child process with a timeout: a regression would block forever on open()
    code = ("from thresher.cli.app import main; main(['inspect', %r])" % str(fifo))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "a FIFO (named pipe), not a regular file" in done.stderr


def test_hf_folder_missing_its_arrow_file(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (folder / "dataset_info.json").write_text("{}")
    with pytest.raises(InputError, match="data file 'data-00000-of-00001.arrow' listed in state.json is missing"):
        read_dataset(folder)


def test_an_unreadable_input_is_one_line(tmp_path, monkeypatch):
    path = _write(tmp_path / "data.jsonl", GOOD + "\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InputError, match=r"data.jsonl: cannot read \(Permission denied\)"):
        read_dataset(path)
