"""Which folders of a mailbox are synced (S6, S9).

SPECIAL-USE flags first (RFC 6154), then well-known and localized names for servers without
them. INBOX, user folders and ``\\Sent`` are synced; ``\\Drafts``, ``\\Junk`` and ``\\Trash``
are not; on Gmail (a ``\\All`` folder exists) only ``\\All``, so labels do not duplicate.
A user's choice (``mailboxes.sync_folders``, JSON list) narrows the default set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailops.match import FolderInfo

__all__ = ["NOT_SYNCED", "choose_folders", "special_use_of"]

SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
NOT_SYNCED = frozenset({"\\Drafts", "\\Junk", "\\Trash"})

# lower-cased last path segment -> special use, for servers without SPECIAL-USE
NAME_HINTS: dict[str, str] = {
    **dict.fromkeys(
        [
            "sent",
            "sent items",
            "sent messages",
            "sent mail",
            "gesendet",
            "gesendete elemente",
            "gesendete objekte",
            "envoyés",
            "éléments envoyés",
            "enviados",
            "elementos enviados",
            "inviati",
            "posta inviata",
            "verzonden items",
        ],
        "\\Sent",
    ),
    **dict.fromkeys(
        ["drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten"],
        "\\Drafts",
    ),
    **dict.fromkeys(
        ["junk", "junk e-mail", "junk email", "spam", "bulk mail", "courrier indésirable"],
        "\\Junk",
    ),
    **dict.fromkeys(
        [
            "trash",
            "deleted items",
            "deleted messages",
            "bin",
            "papierkorb",
            "gelöschte elemente",
            "corbeille",
            "éléments supprimés",
            "papelera",
            "cestino",
            "prullenbak",
        ],
        "\\Trash",
    ),
    **dict.fromkeys(["all mail", "alle nachrichten"], "\\All"),
}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def special_use_of(
    flags: Iterable[bytes | str], name: str, delimiter: str | None = "/"
) -> str | None:
    flagset = {_text(f).lower() for f in flags}
    for use in SPECIAL_USES:
        if use.lower() in flagset:
            return use
    leaf = name.rsplit(delimiter, 1)[-1] if delimiter else name
    return NAME_HINTS.get(leaf.strip().lower())


def choose_folders(
    listing: Sequence[tuple[Iterable[bytes | str], bytes | str | None, str]],
    selected: Sequence[str] | None = None,
) -> list[FolderInfo]:
    """From ``IMAPClient.list_folders()`` rows, the folders to sync in order (INBOX first)."""
    folders: list[FolderInfo] = []
    for flags, delim, name in listing:
        flags = list(flags)
        if any(
            _text(f).lower() == "\\noselect" or _text(f).lower() == "\\nonexistent" for f in flags
        ):
            continue
        use = special_use_of(flags, name, _text(delim) if delim else None)
        if name.upper() == "INBOX":
            name, use = "INBOX", None
        folders.append(FolderInfo(name, use, excluded=use in NOT_SYNCED))
    if any(f.special_use == "\\All" for f in folders):  # Gmail: one copy of everything
        folders = [f for f in folders if f.special_use == "\\All"]
    chosen = [f for f in folders if not f.excluded]
    if selected:
        wanted = {s.upper() if s.upper() == "INBOX" else s for s in selected}
        chosen = [f for f in chosen if f.name in wanted]
    chosen.sort(key=lambda f: (f.name != "INBOX", f.special_use != "\\Sent", f.name))
    return chosen
