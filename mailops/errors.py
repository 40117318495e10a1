"""One exception family. Every expected failure is a MailopsError with a stable code.

The CLI and the notebooks turn a MailopsError into one line (``str(err)``) and an exit
code; a traceback is only for bugs.
"""

from __future__ import annotations


class MailopsError(Exception):
    """Base of every expected failure: ``code`` is stable, ``message`` is for people,
    ``guidance`` tells IT (or the user) what to do about it."""

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None, guidance: str = "") -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.guidance = guidance

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def one_line(self) -> str:
        text = f"error [{self.code}]: {self.message}"
        if self.guidance:
            text += f" ({self.guidance})"
        return " ".join(text.split())


class ConfigError(MailopsError):
    code = "config"
    exit_code = 2


class StoreError(MailopsError):
    code = "store"
    exit_code = 3


class StoreBusy(StoreError):
    """The DuckDB file is locked by another process for longer than we waited."""

    code = "store_busy"


class DevServerError(MailopsError):
    code = "devserver"
    exit_code = 4


class DirectoryError(MailopsError):
    code = "directory"
    exit_code = 2


class ConnectionProblem(MailopsError):
    """A mailbox cannot be reached or used; ``code`` is one of mailops.problems' codes."""

    code = "connection"
    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        guidance: str = "",
        transient: bool = False,
        mailbox: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, guidance=guidance)
        self.transient = transient
        self.mailbox = mailbox
        self.retry_after = retry_after


class PermissionDenied(MailopsError):
    code = "permission_denied"
    exit_code = 6


class SendRefused(MailopsError):
    """A send precondition (E1) or a compose check failed; nothing was sent."""

    code = "send_refused"
    exit_code = 7


class SecretsError(MailopsError):
    code = "secrets"
    exit_code = 2


class ReportError(MailopsError):
    code = "report_failed"
    exit_code = 8


class SyncIncomplete(MailopsError):
    """O1: a sync (or a scheduled job) left mailboxes failed or skipped; ``exit_code`` is
    the worst outcome's (``mailops.outcomes.EXIT_CODES``: 9 failed, 10 problematic, 11 busy)."""

    code = "sync_failed"
    exit_code = 9

    def __init__(self, message: str, *, exit_code: int = 9, code: str = "sync_failed") -> None:
        super().__init__(message, code=code)
        self.exit_code = exit_code
