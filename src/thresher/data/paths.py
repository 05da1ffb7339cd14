"""Where thresher may write, and how: the one output-path policy and atomic writes.

Every output (subset, manifest, rejects, features, report, adapter, cache
part) goes through `check_output_path` (before the work, so a refusal costs
nothing) and `atomic_path` (the write itself: temp file + rename, temp
removed on any failure, OS errors turned into one-line `OutputError`s).

The policy, in one place:

- never the input: not the same path, not the same file through a symlink,
  a hard link or `.`, not a folder that contains the input, not a path
  inside an input folder;
- only regular files and folders: a device, FIFO or socket is refused
  (`-o /dev/full` would "succeed" while writing nothing);
- an existing output is replaced only with `overwrite`;
- an existing folder is replaced only by a folder output (an HF dataset, an
  adapter), only when it is empty or holds a previous thresher output of
  the same kind; a file output never replaces a folder.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from thresher.errors import OutputError, OutputExistsError

_HF_FILES = {"state.json", "dataset_info.json"}
FOLDER_KINDS = ("hf", "adapter")


# -- the policy -----------------------------------------------------------

def check_output_path(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                      overwrite: bool = False, kind: str | None = None) -> None:
    """Refuse an output path the policy forbids (see the module docstring).

    `kind`: "file", or a folder kind ("hf", "adapter"); None when the caller
    does not know yet (then an existing folder passes only if it is a
    thresher folder, and `atomic_path` checks the kind at the write).
    """
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise OutputError(f"{out}: name the output file or folder (not '.' or '..')")
    _refuse_input_overlap(out, [Path(p) for p in inputs if p])
    if not os.path.lexists(out):
        return
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:  # a dangling symlink: replacing it replaces only the link
        mode = stat.S_IFREG
    except OSError as err:
        raise OutputError(io_message(out, err, "cannot check")) from None
    if stat.S_ISDIR(mode):
        _check_folder(out, kind)
    elif not stat.S_ISREG(mode):
        raise OutputError(f"{out} is {_file_type(mode)}, not a regular file; write to a file instead")
    if not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")


def _refuse_input_overlap(out: Path, inputs: list[Path]) -> None:
    resolved = out.resolve()
    for inp in inputs:
        if not inp.exists():
            continue
        real = inp.resolve()
        if real == resolved or _same_file(out, inp):
            raise OutputError(f"{out}: the output would overwrite the input; choose another path")
        if resolved in real.parents:
            raise OutputError(f"{out} is a folder holding the input {inp}; choose another path")
        if inp.is_dir() and real in resolved.parents:
            raise OutputError(f"{out} is inside the input folder {inp}, which is never modified; "
                              "choose another path")


def _same_file(a: Path, b: Path) -> bool:
    """Hard links (and bind mounts) of one file resolve to different paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_folder(out: Path, kind: str | None) -> None:
    """An existing folder may be replaced only by a folder output of its own kind."""
    if kind not in (None, *FOLDER_KINDS):
        raise OutputError(f"{out} is a folder; this output is a file: name it (e.g. {out / 'subset.jsonl'})")
    found = folder_kind(out)
    if found == "empty" or (found is not None and kind in (None, found)):
        return
    what = f"a thresher {found} folder" if found else "a folder holding files thresher did not write"
    raise OutputError(f"{out} is {what}; refusing to replace it{f' with a {kind} output' if kind else ''}; "
                      "choose another path")


def folder_kind(path: Path) -> str | None:
    """"empty", "hf" or "adapter" for a folder thresher may replace (only regular
    files of that kind of output); None for any other folder."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return None
    if not entries:
        return "empty"
    if not all(e.is_file(follow_symlinks=False) for e in entries):
        return None
    names = {e.name for e in entries}
    if "state.json" in names and all(n in _HF_FILES or n.endswith(".arrow") for n in names):
        return "hf"
    if "train_config.json" in names:
        return "adapter"
    return None


def _file_type(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def io_message(path: Path, err: OSError, verb: str = "cannot write") -> str:
    """`out.jsonl: cannot write (No space left on device)`: one line, naming the path."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno == errno.EROFS:
        reason = "read-only file system"
    return f"{path}: {verb} ({reason})"


# -- the write -------------------------------------------------------------

@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success it replaces `target`.

    The body writes a file at the temp path (or replaces it with a folder).
    Any failure removes the temp path and leaves `target` as it was; an
    OSError (disk full, read-only, no permission...) becomes an OutputError
    naming `target`.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as err:
        raise OutputError(io_message(target, err)) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files; outputs get the usual umask mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        _replace(tmp_path, target)
    except BaseException as err:
        _remove(tmp_path)
        if isinstance(err, OSError):
            raise OutputError(io_message(target, err)) from None
        raise


def _replace(tmp: Path, target: Path) -> None:
    """Move `tmp` over `target`; a folder is only ever replaced by a folder of its kind."""
    if not os.path.lexists(target) or target.is_symlink() and not target.exists():
        os.replace(tmp, target)
        return
    mode = os.stat(target).st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise OutputError(f"{target} is {_file_type(mode)}, not a regular file; write to a file instead")
    if not stat.S_ISDIR(mode):
        os.replace(tmp, target)
        return
    if not tmp.is_dir():
        raise OutputError(f"{target} is a folder; refusing to replace it with a file")
    new_kind, old_kind = folder_kind(tmp), folder_kind(target)
    if old_kind != "empty" and (new_kind not in FOLDER_KINDS or old_kind != new_kind):
        what = f"a thresher {old_kind} folder" if old_kind else "a folder holding files thresher did not write"
        raise OutputError(f"{target} is {what}; refusing to replace it with a different output; "
                          "choose another path")
    backup = target.with_name(f".{target.name}.old")
    _remove(backup)
    os.replace(target, backup)
    os.replace(tmp, target)
    _remove(backup)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
