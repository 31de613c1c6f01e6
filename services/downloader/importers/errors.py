"""Import errors that name the file, the line and the column a person has to fix."""

from __future__ import annotations


class ImportFailed(ValueError):
    def __init__(self, file: str, message: str, line: int | None = None, column: str | int | None = None):
        self.file = file
        self.line = line
        self.column = column
        self.reason = message
        where = file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")

    def as_dict(self) -> dict[str, str | int | None]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.reason}
