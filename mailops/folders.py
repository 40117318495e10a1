"""Which folders of a mailbox are synced (S6, S9).

The special use of each folder comes from the one finder, ``mailops.imap.special`` (flags,
then localized names). INBOX, user folders and ``\\Sent`` are synced; ``\\Drafts``,
``\\Junk`` and ``\\Trash`` are not; on Gmail (a ``\\All`` folder exists) only ``\\All``, so
labels do not duplicate. A user's choice (``mailboxes.sync_folders``, JSON list) narrows
the default set. ``plan_folders`` also says why each other folder is not examined (S11).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailops.imap.special import NAME_HINTS, SPECIAL_USES, special_use_of
from mailops.match import FolderInfo

__all__ = [
    "NAME_HINTS",
    "NOT_SYNCED",
    "SPECIAL_USES",
    "choose_folders",
    "plan_folders",
    "special_use_of",
]

NOT_SYNCED = frozenset({"\\Drafts", "\\Junk", "\\Trash"})


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


Listing = Sequence[tuple[Iterable[bytes | str], bytes | str | None, str]]


def plan_folders(
    listing: Listing, selected: Sequence[str] | None = None
) -> tuple[list[FolderInfo], list[tuple[FolderInfo, str]]]:
    """The folders to sync in order (INBOX first), and every other selectable folder with
    the reason it is not examined: ``special_use`` (Drafts/Junk/Trash), ``gmail_labels``
    (covered by All Mail), ``not_selected`` (the user's choice, S9), ``no_select`` (the
    server says it holds no messages: a container, or a folder it cannot open)."""
    folders: list[FolderInfo] = []
    skipped: list[tuple[FolderInfo, str]] = []
    for flags, delim, name in listing:
        flags = list(flags)
        if any(_text(f).lower() in ("\\noselect", "\\nonexistent") for f in flags):
            skipped.append((FolderInfo(name, None, excluded=True), "no_select"))
            continue
        use = special_use_of(flags, name, _text(delim) if delim else None)
        if name.upper() == "INBOX":
            name, use = "INBOX", None
        folders.append(FolderInfo(name, use, excluded=use in NOT_SYNCED))
    if any(f.special_use == "\\All" for f in folders):  # Gmail: one copy of everything
        skipped += [
            (f, "special_use" if f.excluded else "gmail_labels")
            for f in folders
            if f.special_use != "\\All"
        ]
        folders = [f for f in folders if f.special_use == "\\All"]
    skipped += [(f, "special_use") for f in folders if f.excluded]
    chosen = [f for f in folders if not f.excluded]
    if selected:
        wanted = {s.upper() if s.upper() == "INBOX" else s for s in selected}
        skipped += [(f, "not_selected") for f in chosen if f.name not in wanted]
        chosen = [f for f in chosen if f.name in wanted]
    chosen.sort(key=lambda f: (f.name != "INBOX", f.special_use != "\\Sent", f.name))
    skipped.sort(key=lambda fr: fr[0].name)
    return chosen, skipped


def choose_folders(listing: Listing, selected: Sequence[str] | None = None) -> list[FolderInfo]:
    """From ``IMAPClient.list_folders()`` rows, the folders to sync in order (INBOX first)."""
    return plan_folders(listing, selected)[0]
