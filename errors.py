"""Exceptions with one-line messages, mapped by the CLI to exit statuses.

Every error the toolkit raises on purpose derives from :class:`CarbonschedError`; its message is a
single line meant for the user, and ``exit_status`` is what the command-line tool returns.
"""

from __future__ import annotations


class CarbonschedError(Exception):
    """Base class of the toolkit's deliberate errors (one-line message, CLI status 2)."""

    exit_status = 2


class InstanceError(CarbonschedError, ValueError):
    """An instance file or object breaks a rule of INSTANCE.md (names field, rule and index)."""


class InputError(CarbonschedError, ValueError):
    """A bad command-line argument or API parameter (names the parameter)."""


class InfeasibleError(CarbonschedError):
    """The instance has no feasible solution: its mandatory jobs cannot all be placed (names them)."""

    exit_status = 3

    def __init__(self, message: str, jobs: list[str] | None = None) -> None:
        super().__init__(message)
        self.jobs = list(jobs or [])


class NoSolutionError(CarbonschedError):
    """A limit (time, nodes, interrupt) was reached before any feasible solution was found."""

    exit_status = 4


class OutOfMemoryError(CarbonschedError):
    """The run ran out of memory (Python's MemoryError, or SCIP's memory error -8) before any solution."""

    exit_status = 6


class OutputError(CarbonschedError):
    """An output file could not be written (full disk, permissions, I/O error); the previous file is intact."""

    exit_status = 5
