"""The one place where revstats' exception and warning types live."""

from __future__ import annotations

__all__ = [
    "CorruptStoreError",
    "DegenerateDataWarning",
    "IncompleteStoreError",
    "RevstatsError",
    "RevstatsWarning",
    "SchemaError",
]


class RevstatsError(Exception):
    """Base class of every error revstats raises on purpose."""


class SchemaError(RevstatsError, ValueError):
    """A store or dataset does not follow the revstats schema.

    The message names the variable (or attribute) and what is wrong with it.
    """

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        self.variable = variable
        super().__init__(message)


class CorruptStoreError(RevstatsError, ValueError):
    """A chunk of a store is damaged, missing, misplaced or not a regular file.

    The message names the chunk (variable, run, step where known) and what to do. A
    `ValueError` too, as zarr's own checksum errors are.
    """


class IncompleteStoreError(RevstatsError):
    """A store whose writer has not finished (slabs missing); the message gives the command
    that resumes it."""


class RevstatsWarning(UserWarning):
    """Base class of revstats' warnings."""


class DegenerateDataWarning(RevstatsWarning):
    """The data make a method invalid or unreliable (for example a one-sided bootstrap
    distribution, zero-variance samples or a zero-length vector); the result says what was done
    instead."""
