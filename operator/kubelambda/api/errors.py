"""What the spec models raise on invalid input; every component that parses a spec catches these.

ValueError
 ├── SpecError       one object is invalid: every Problem found in it (field path + message)
 └── ManifestError   manifest files could not be loaded: every ManifestProblem found in them
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field: ``path`` as kubectl prints it (``spec.env[2].name``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A Function or Trigger that the CRD would refuse, with all of its problems at once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("SpecError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def path(self) -> str:
        """The field path of the first problem."""
        return self.problems[0].path

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.problems)


@dataclass(frozen=True, kw_only=True)
class ManifestProblem:
    """One problem in a manifest file.

    ``document`` counts the YAML documents of the file from 1 (None: the file as a whole);
    ``obj`` is ``Kind/name`` when known; ``path`` is the field path, or "" for the document.
    """

    file: Path
    document: int | None
    obj: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = str(self.file)
        if self.document is not None:
            where += f", document {self.document}"
        if self.obj:
            where += f" ({self.obj})"
        what = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {what}"


class ManifestError(ValueError):
    """Manifests that cannot be loaded; lists every problem of every file."""

    def __init__(self, problems: Sequence[ManifestProblem]) -> None:
        if not problems:
            raise ValueError("ManifestError needs at least one problem")
        self.problems: tuple[ManifestProblem, ...] = tuple(problems)
        count = len(self.problems)
        heading = "1 problem in manifests" if count == 1 else f"{count} problems in manifests"
        super().__init__(heading + ":\n" + "\n".join(f"  {p}" for p in self.problems))
