"""Errors the engine raises. Each says what is wrong and where, for a person to act on."""

from __future__ import annotations


class DubanError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFound(DubanError):
    pass


class PermissionDenied(DubanError):
    pass


class Conflict(DubanError):
    """Someone else changed the item first; nothing was changed by this request."""


class FormError(DubanError):
    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors.items()))


class ImportErrors(DubanError):
    """All problems found in a data file, reported together; nothing was imported."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(problems))


class DeployError(DubanError):
    """A process file that cannot be deployed, located by file, line and element."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
