"""Every error lwdp raises: each derives from `LwdpError` and the matching builtin.

Catching the builtin (``FileNotFoundError``, ``TypeError`` ...) keeps working for code
that knows nothing about lwdp; catching `LwdpError` catches everything lwdp raises.
"""

from __future__ import annotations


class LwdpError(Exception):
    """Base class of every error raised by lwdp itself (never of the user's own errors)."""


class RawInputNotFoundError(LwdpError, FileNotFoundError):
    """A raw input path, glob or directory names no file."""


class RawInputUnreadableError(LwdpError, PermissionError):
    """A raw input exists but cannot be read."""


class InputBindingError(LwdpError, TypeError):
    """An @stage input is neither a path, a stage nor a stably hashable parameter."""


class UnknownFormatError(LwdpError, ValueError):
    """A cache format that pandas cannot both write and read."""


class FormatUnavailableError(LwdpError, ImportError):
    """A known cache format whose optional dependency is not installed."""


class ResultNotStorableError(LwdpError, TypeError):
    """A stage result that its cache format cannot store."""


class CatalogVersionError(LwdpError, RuntimeError):
    """The catalog was written by a newer lwdp than the one running."""


class _LwdpOSError(LwdpError, OSError):
    """An OSError whose message is lwdp's own sentence, keeping the cause's errno."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class RawInputChangedError(_LwdpOSError):
    """A raw input file changed size while lwdp was hashing it."""


class CacheDirError(_LwdpOSError):
    """The cache directory cannot be created, written, or its catalog opened."""


class StageNameCollisionError(LwdpError, ValueError):
    """Two different stages in one pipeline share a qualified name."""


class ArtifactWriteError(_LwdpOSError):
    """Writing an artifact failed (disk full, I/O error); nothing was published."""


class UnknownStageError(LwdpError, LookupError):
    """A stage name or hash the catalog doesn't know, or a bare name that several stages share."""


class CatalogUnavailableError(_LwdpOSError):
    """The catalog could not be read or written (locked too long, disk or permission trouble)."""


class CatalogDamagedError(_LwdpOSError):
    """The catalog turned out damaged mid-run; it was moved aside and a new one is made."""


class UnknownPackageError(LwdpError, LookupError):
    """A package named in ``hash_packages`` is not installed."""


class MissingExtraError(LwdpError, ImportError):
    """An optional part of lwdp (a shared store, a PostgreSQL catalog) whose extra is not installed."""


class StoreUnavailableError(_LwdpOSError):
    """The shared artifact store could not be reached or refused a request."""


class InvalidSettingError(LwdpError, ValueError):
    """An option given to `configure` or in the environment that can't be used."""


class WorkerError(LwdpError, RuntimeError):
    """A worker process ended while computing a stage (killed, crashed, exited), or could
    not start."""


class StageErrorNotSendable(LwdpError, RuntimeError):
    """A stage raised, in a worker, an exception that could not travel back to the run's
    process (it doesn't pickle); its type, message and traceback are in the message."""


class ResultNotSendableError(LwdpError, TypeError):
    """An uncached stage's result, computed by a worker, could not travel to the run's
    process (it doesn't pickle)."""


class UndeclaredInputError(LwdpError, RuntimeError):
    """A stage read a file or listed a directory that is not one of its inputs, with
    ``undeclared_inputs="error"``; nothing was cached for it."""
