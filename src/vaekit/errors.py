"""Errors raised for user mistakes.

Every exception here is a *user* error: bad input data, a wrong argument, an unusable
checkpoint. The CLI prints its message on one line and exits with status 2, without a
traceback. Messages name the file or argument and say what to change.
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class for errors caused by input the user can fix (CLI exit status 2)."""


class DataError(VaekitError, ValueError):
    """Input data that cannot be read or is inconsistent (truncated, corrupt, mismatched)."""


class DataTypeError(DataError, TypeError):
    """Input holding objects that are not numbers (a TypeError, as in NumPy and scikit-learn)."""


class CheckpointError(VaekitError, ValueError):
    """A run directory that is missing, from another version, or tampered with."""


class ConfigError(VaekitError, ValueError):
    """An unknown configuration key or a value of the wrong type or range."""


class TrainingDivergedError(VaekitError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept.

    ``epochs_saved`` is the number of epochs the diverged training had finished (and
    checkpointed, with a run folder): 0 when it diverged in its first.
    """

    def __init__(self, message: str, *, epochs_saved: int = 0) -> None:
        super().__init__(message)
        self.epochs_saved = epochs_saved


class NearlyBlackWarning(UserWarning):
    """Integer images so dark that they are almost surely on another scale than 0..255."""
