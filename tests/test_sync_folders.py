"""Folder choice by SPECIAL-USE, then names (S6, S9)."""

from __future__ import annotations

import pytest

from mailops.folders import choose_folders


def names(folders):
    return [(f.name, f.special_use) for f in folders]


def test_S6_special_use_flags_decide_before_names():
    listing = [
        ((b"\\HasNoChildren",), b"/", "INBOX"),
        ((b"\\Sent",), b"/", "Gesendet"),
        ((b"\\Drafts",), b"/", "Entwuerfe"),
        ((b"\\Junk",), b"/", "Werbung"),
        ((b"\\Trash",), b"/", "Weg"),
        ((b"\\HasNoChildren",), b"/", "Kunden/Acme"),
        ((b"\\Noselect",), b"/", "Kunden"),
    ]
    assert names(choose_folders(listing)) == [
        ("INBOX", None),
        ("Gesendet", "\\Sent"),
        ("Kunden/Acme", None),
    ]


@pytest.mark.parametrize(
    "name,kept",
    [
        ("Sent Items", True),
        ("Deleted Items", False),
        ("Junk E-mail", False),
        ("Drafts", False),
        ("Papierkorb", False),
        ("Projects", True),
    ],
    ids=[
        "S6-sent-items",
        "S6-deleted-items",
        "S6-junk-email",
        "S6-drafts",
        "S6-papierkorb",
        "user-folder",
    ],
)
def test_S6_names_without_special_use(name, kept):
    listing = [((), b"/", "INBOX"), ((b"\\HasNoChildren",), b"/", name)]
    assert (name in [f.name for f in choose_folders(listing)]) is kept


def test_gmail_all_mail_only():
    listing = [
        ((), b"/", "INBOX"),
        ((b"\\Noselect",), b"/", "[Gmail]"),
        ((b"\\All",), b"/", "[Gmail]/All Mail"),
        ((b"\\Sent",), b"/", "[Gmail]/Sent Mail"),
        ((), b"/", "Label"),
    ]
    assert names(choose_folders(listing)) == [("[Gmail]/All Mail", "\\All")]


def test_S9_user_selection_narrows_but_never_adds_drafts():
    listing = [
        ((), b"/", "INBOX"),
        ((b"\\Sent",), b"/", "Sent"),
        ((b"\\Drafts",), b"/", "Drafts"),
        ((), b"/", "Archive"),
    ]
    assert names(choose_folders(listing, ["inbox", "Drafts", "Archive"])) == [
        ("INBOX", None),
        ("Archive", None),
    ]


def test_S11_every_folder_not_synced_says_why():
    from mailops.folders import plan_folders

    listing = [
        ((), b"/", "INBOX"),
        ((b"\\Sent",), b"/", "Sent"),
        ((b"\\Junk",), b"/", "Junk"),
        ((), b"/", "Papierkorb"),
        ((b"\\Noselect",), b"/", "Container"),
        ((), b"/", "Private"),
        ((), b"/", "Projects"),
    ]
    synced, skipped = plan_folders(listing, ["INBOX", "Sent", "Projects"])
    assert [f.name for f in synced] == ["INBOX", "Sent", "Projects"]
    assert [(f.name, why) for f, why in skipped] == [
        ("Container", "no_select"),
        ("Junk", "special_use"),
        ("Papierkorb", "special_use"),
        ("Private", "not_selected"),
    ]
    gmail = [((), b"/", "INBOX"), ((b"\\All",), b"/", "[Gmail]/All Mail"), ((), b"/", "Label")]
    assert [(f.name, why) for f, why in plan_folders(gmail)[1]] == [
        ("INBOX", "gmail_labels"),
        ("Label", "gmail_labels"),
    ]
