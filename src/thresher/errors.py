"""One exception family; the CLI prints these without a traceback and exits 2."""
from __future__ import annotations


class ThresherError(Exception):
    """Base class for every error a user can act on."""

    exit_code = 2


class InputError(ThresherError):
    """Malformed input data: names the file, the line (or record/row) and the field.

    `line` is a 1-based line of a text file; `record` a 1-based record of a
    JSON array, Parquet file or HF dataset (those have no useful lines).
    """

    def __init__(self, path: str, reason: str, line: int | None = None, field: str | None = None,
                 record: int | None = None):
        self.path = str(path)
        self.line = line
        self.record = record
        self.field = field
        self.reason = reason
        if line is not None:
            where = f"{self.path}:{line}"
        elif record is not None:
            where = f"{self.path}: record {record}"
        else:
            where = self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # so an error raised on a Ray worker reaches the driver whole
        return (InputError, (self.path, self.reason, self.line, self.field, self.record))


class UsageError(ThresherError):
    """A bad argument or option combination."""


class OutputExistsError(ThresherError):
    """The output exists and --overwrite was not given."""


class OutputError(ThresherError):
    """An output that may not be written there (it is the input, a device, a foreign
    folder...) or that the system refused to write (disk full, read-only, no permission)."""
