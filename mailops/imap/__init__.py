"""The IMAP layer: sessions, commands, the fast FETCH parser, the special-folder finder.

Like closeio's sync-engine keeps its IMAP-client wrapper (``crispin.py``) apart from the
per-folder engine (``generic.py``), mailops keeps the wire here and the engine in
``mailops.sync``. Nothing outside this package calls a private imaplib/imapclient API.

- ``sessions``: TLS, login (password / XOAUTH2), ``SessionPool``, ``session_for``.
- ``commands``: list-with-status, status, select, search/count, fetch, append.
- ``fetch_parser``: the lean FETCH reader (straight off the socket buffer, literal-aware)
  -> imapclient's shape; INTERNALDATE without ``strptime``.
- ``special``: which folder is Sent / Drafts / Junk / Trash / All (flags, then names).
"""

from imapclient import IMAPClient as Client
from imapclient.exceptions import IMAPClientAbortError as IMAPAbort
from imapclient.exceptions import IMAPClientError as IMAPError

from mailops.imap.sessions import (
    Session,
    SessionPool,
    close_imap,
    imap_session,
    is_dropped,
    is_imap_error,
    login,
    login_error_problem,
    open_imap,
    session_for,
    ssl_context,
)
from mailops.imap.special import find_special_folder, special_folders, special_use_of

__all__ = [
    "Client",
    "IMAPAbort",
    "IMAPError",
    "Session",
    "SessionPool",
    "close_imap",
    "find_special_folder",
    "imap_session",
    "is_dropped",
    "is_imap_error",
    "login",
    "login_error_problem",
    "open_imap",
    "session_for",
    "special_folders",
    "special_use_of",
    "ssl_context",
]
