"""The output-path policy and I/O faults: the input always survives, no temp file
is left behind, and every refusal or fault is one line naming the path, exit 2."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli
from thresher.cli.app import main
from thresher.data.paths import atomic_path, check_output_path, write_bytes_atomic
from thresher.errors import OutputError, OutputExistsError, ThresherError

ROWS = [{"instruction": f"question {i}", "output": f"answer {i}", "category": "ab"[i % 2]} for i in range(20)]


def _pool(folder: Path, name: str = "pool.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def run(args, capsys):
    return run_cli(args, capsys, main)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith((".tmp", ".old")))


# -- the policy --------------------------------------------------------------

def test_a_folder_holding_the_input_is_refused_and_the_input_survives(tmp_path, capsys):
    pool = _pool(tmp_path / "dir")
    before = pool.read_bytes()
    code, _, err = run(["sample", pool, "-o", tmp_path / "dir", "--overwrite", "--n", "5"], capsys)
    assert code == 2 and "holding the input" in _one_error_line(err)
    assert pool.read_bytes() == before and sorted(os.listdir(tmp_path / "dir")) == ["pool.jsonl"]


def test_dot_is_refused_without_a_traceback(tmp_path, capsys, monkeypatch):
    pool = _pool(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["sample", "pool.jsonl", "-o", ".", "--overwrite", "--n", "5"], capsys)
    assert code == 2 and "'.'" in _one_error_line(err)
    assert pool.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_device_is_refused_even_with_overwrite(tmp_path, capsys):
    code, _, err = run(["sample", _pool(tmp_path), "-o", "/dev/full", "--overwrite", "--n", "5"], capsys)
    assert code == 2 and "/dev/full is a device" in _one_error_line(err)


def test_a_fifo_output_is_refused(tmp_path):
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        check_output_path(fifo, [], overwrite=True)


@pytest.mark.parametrize("link", ["symlink", "hardlink", "dotted"])
def test_the_input_by_another_name_is_refused(tmp_path, link):
    pool = _pool(tmp_path / "data")
    other = tmp_path / "other.jsonl"
    if link == "symlink":
        other.symlink_to(pool)
    elif link == "hardlink":
        os.link(pool, other)
    else:
        other = tmp_path / "data" / "." / ".." / "data" / "pool.jsonl"
    with pytest.raises(OutputError, match="overwrite the input"):
        check_output_path(other, [str(pool)], overwrite=True)


def test_a_path_inside_an_input_folder_is_refused(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output_path(hf / "subset.jsonl", [str(hf)], overwrite=True)


def test_a_foreign_folder_is_never_replaced(tmp_path, capsys):
    pool = _pool(tmp_path)
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    for fmt in ([], ["--output-format", "hf"]):
        code, _, err = run(["sample", pool, "-o", keep, "--overwrite", "--n", "5", *fmt], capsys)
        assert code == 2 and "did not write" in _one_error_line(err)
    assert (keep / "notes.txt").read_text() == "precious"


def test_hf_output_replaces_its_own_kind_only(tmp_path, capsys):
    pool = _pool(tmp_path)
    out = tmp_path / "subset"
    assert run(["sample", pool, "-o", out, "--output-format", "hf", "--n", "5"], capsys)[0] == 0
    assert run(["sample", pool, "-o", out, "--output-format", "hf", "--n", "6", "--overwrite"], capsys)[0] == 0
    assert json.loads((tmp_path / "subset.manifest.json").read_text())["output"]["rows"] == 6
    # a file output never replaces the folder, even with --overwrite
    code, _, err = run(["sample", pool, "-o", out, "--n", "6", "--overwrite"], capsys)
    assert code == 2 and "folder" in _one_error_line(err)
    assert (out / "state.json").is_file() and _leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    target = tmp_path / "x.jsonl"
    target.write_text("old")
    with pytest.raises(OutputExistsError):
        check_output_path(target, [], overwrite=False)
    check_output_path(target, [], overwrite=True)


def test_atomic_path_refuses_to_replace_a_folder_with_a_file(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="folder"):
        write_bytes_atomic(folder, b"data")
    assert (folder / "keep.txt").read_text() == "x" and _leftovers(tmp_path) == []


# -- I/O faults ----------------------------------------------------------------

def _fail_writes(monkeypatch, code: int):
    """Every Path.write_bytes / write_text, and every file opened for writing with
    Path.open (the streaming JSONL writer), writes a few bytes, then fails with `code`."""
    def failing(self, data, *args, **kwargs):
        with open(self, "wb") as f:
            f.write(b"partial")
        raise OSError(code, os.strerror(code), str(self))

    real_open = Path.open

    def failing_open(self, mode="r", *args, **kwargs):
        if "w" not in mode and "a" not in mode:
            return real_open(self, mode, *args, **kwargs)
        failing(self, b"")

    monkeypatch.setattr(Path, "write_bytes", failing)
    monkeypatch.setattr(Path, "write_text", failing)
    monkeypatch.setattr(Path, "open", failing_open)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EROFS, "read-only file system"),
                                         (errno.EACCES, "Permission denied")])
def test_write_faults_are_one_line_errors_and_leave_nothing_behind(tmp_path, capsys, monkeypatch, code, words):
    pool = _pool(tmp_path / "in")
    before = pool.read_bytes()
    out = tmp_path / "out" / "subset.jsonl"
    _fail_writes(monkeypatch, code)
    code_, _, err = run(["sample", pool, "-o", out, "--n", "5"], capsys)
    line = _one_error_line(err)
    assert code_ == 2 and str(out) in line and words in line
    assert list((tmp_path / "out").iterdir()) == [] and pool.read_bytes() == before


def test_an_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = tmp_path / "subset.jsonl"
    code, _, err = run(["sample", _pool(tmp_path / "in"), "-o", out, "--n", "5"], capsys)
    assert code == 2 and f"{out}: cannot write (Permission denied)" in _one_error_line(err)


def test_a_parent_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "subset.jsonl"
    code, _, err = run(["sample", _pool(tmp_path / "in"), "-o", out, "--n", "5"], capsys)
    assert code == 2 and str(out) in _one_error_line(err)


def test_atomic_path_removes_its_temp_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(OutputError, match="No space left"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture()
def tmpfs(tmp_path):
    """Mounts a tmpfs (root on Linux only): yields a function (options) -> mount point."""
    mounted: list[Path] = []

    def make(options: str) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        if not _mount_tmpfs(where, options):
            pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_a_real_full_disk(tmp_path, tmpfs, capsys):
    small = tmpfs("size=64k")
    pool = tmp_path / "big.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"q{i}" + "x" * 200, "output": "a"}) + "\n" for i in range(2000)))
    out = small / "subset.jsonl"
    code, _, err = run(["sample", pool, "-o", out, "--n", "1500"], capsys)
    assert code == 2 and f"{out}: cannot write (No space left on device)" in _one_error_line(err)
    assert os.listdir(small) == []


def test_a_read_only_mount(tmp_path, tmpfs, capsys):
    ro = tmpfs("size=64k,ro")
    out = ro / "subset.jsonl"
    code, _, err = run(["sample", _pool(tmp_path), "-o", out, "--n", "5"], capsys)
    assert code == 2 and f"{out}: cannot write (read-only file system)" in _one_error_line(err)


def test_output_error_is_a_thresher_error():
    assert issubclass(OutputError, ThresherError)
