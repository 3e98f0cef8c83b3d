"""Problems found in a pipeline spec, each tied to a file, a line and a field.

Every user mistake ends up as a :class:`Problem`; many of them together as a :class:`SpecError`.
The CLI prints them, the DAG factory shows them in a placeholder DAG, and nothing else
(no traceback) reaches the user. A problem with ``severity="warning"`` (a component's extra not
installed, a deprecated config spelling) is reported by ``mlpipe validate`` but never stops a
spec from loading.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Location:
    """A place in a spec file; line and column count from 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where, which field, what, and how to fix it."""

    message: str
    location: Location | None = None
    field: str = ""
    suggestion: str = ""
    severity: Severity = "error"

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def format(self) -> str:
        where = str(self.location) if self.location else "<unknown>"
        field = f"{self.field}: " if self.field else ""
        label = "warning: " if self.is_warning else ""
        text = f"{where}: {field}{label}{self.message}"
        if self.suggestion:
            text += f"\n    hint: {self.suggestion}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.location.file if self.location else None,
            "line": self.location.line if self.location else None,
            "column": self.location.column if self.location else None,
            "field": self.field,
            "message": self.message,
            "suggestion": self.suggestion,
            "severity": self.severity,
        }


class SpecError(Exception):
    """A spec (or a folder of specs) failed to load; carries every problem found.

    ``warnings`` are the spec's warnings, kept so that a broken spec's report has them too;
    :meth:`format` (what a placeholder DAG shows) is the errors only.
    """

    def __init__(self, problems: Iterable[Problem], warnings: Iterable[Problem] = ()) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings)
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(problem.format() for problem in self.problems)
