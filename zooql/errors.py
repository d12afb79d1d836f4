"""Error hierarchy: one base class, one class per phase.

User errors (anything derived from :class:`ZooQLError`) are shown by the REPL and
CLI as a message, never as a traceback.
"""
from __future__ import annotations


class ZooQLError(Exception):
    """Base class of every error ZooQL raises on purpose."""

    phase = "error"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        if self.hint:
            return f"{self.message}\n{self.hint}"
        return self.message


class ParseError(ZooQLError):
    """The query text is not valid ZooQL (carries line, column and a caret)."""

    phase = "parse"

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 context: str | None = None, expected: list[str] | None = None):
        super().__init__(message)
        self.line = line
        self.column = column
        self.context = context
        self.expected = expected or []

    def __str__(self) -> str:
        out = self.message
        if self.context:
            out += "\n" + self.context
        return out


class BindError(ZooQLError):
    """A name or value in a valid query does not resolve against the catalog. When the
    error is about one place of the text, ``line``/``column`` say where and ``context``
    (filled in by ``Hub.execute``, which has the text) shows it with a caret."""

    phase = "bind"

    def __init__(self, message: str, *, hint: str | None = None, line: int | None = None,
                 column: int | None = None, context: str | None = None):
        super().__init__(message, hint=hint)
        self.line = line
        self.column = column
        self.context = context

    def __str__(self) -> str:
        out = super().__str__()
        return out + "\n" + self.context if self.context else out


class ExecutionError(ZooQLError):
    """A statement failed while running (bad file, model that fails to load, ...)."""

    phase = "execution"


class SecurityError(ExecutionError):
    """Refused for safety: pickled checkpoints, untrusted code, paths outside scope."""


class StorageError(ZooQLError):
    """The hub on disk is missing, locked, corrupt or of another format version."""

    phase = "storage"


class Cancelled(ZooQLError):
    """A running statement was interrupted by the user; finished work was kept."""

    phase = "execution"
