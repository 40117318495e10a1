"""The one special-folder finder (RFC 6154), for sync and send alike.

SPECIAL-USE flags first, then well-known and localized names for servers without them
("Gesendete Elemente", "Éléments envoyés", ...). ``mailops.folders`` decides from it which
folders are synced; ``send`` files its Sent copy in the folder it names, so a sent copy
always lands where the sync reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from imapclient import IMAPClient

__all__ = [
    "NAME_HINTS",
    "SPECIAL_USES",
    "find_special_folder",
    "special_folders",
    "special_use_of",
]

SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")

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


def _flag_use(flags: Iterable[bytes | str]) -> str | None:
    flagset = {_text(f).lower() for f in flags}
    for use in SPECIAL_USES:
        if use.lower() in flagset:
            return use
    return None


def _name_use(name: str, delimiter: str | None) -> str | None:
    leaf = name.rsplit(delimiter, 1)[-1] if delimiter else name
    return NAME_HINTS.get(leaf.strip().lower())


def special_use_of(
    flags: Iterable[bytes | str], name: str, delimiter: str | None = "/"
) -> str | None:
    """The special use of one folder: its flag, else what its name says, else None."""
    return _flag_use(flags) or _name_use(name, delimiter)


def special_folders(listing: Sequence[tuple[Iterable[bytes | str], Any, str]]) -> dict[str, str]:
    """use -> folder name for a LIST result. A flagged folder beats a name; among names the
    shallowest, then alphabetical, wins (so the answer does not depend on LIST order)."""
    by_flag: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    for flags, delim, name in listing:
        flags = list(flags)
        if any(_text(f).lower() in ("\\noselect", "\\nonexistent") for f in flags):
            continue
        if (use := _flag_use(flags)) is not None:
            by_flag.setdefault(use, name)
        elif (use := _name_use(name, _text(delim) if delim else None)) is not None:
            by_name.setdefault(use, []).append(name)
    found = {
        use: sorted(names, key=lambda n: (n.count("/") + n.count("."), n))[0]
        for use, names in by_name.items()
    }
    found.update(by_flag)
    return found


def find_special_folder(client: IMAPClient, use: str, *, create: str | None = None) -> str | None:
    """The folder of USE (e.g. ``"\\\\Sent"``) on CLIENT's server; CREATE it under that name
    when the server has none (and return it), else None."""
    from mailops.imap.commands import create_folder, list_folders

    name = special_folders(list_folders(client)).get(use)
    if name is None and create:
        create_folder(client, create)
        name = create
    return name
