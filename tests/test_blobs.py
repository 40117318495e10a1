"""The blob folder and the spooled-message skeleton (S12), as pure units."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from email.message import EmailMessage

import pytest

from mailops import spool
from mailops.parse import parse_message
from mailops.store import Store, blobs
from mailops.store.blobs import BlobFolder
from mailops.store.migrations import MIGRATIONS


def _message(attachment: bytes, *, text: str = "Hello,\nthe plans.\n") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "a@c.test", "me@x.test", "plans", "<p@c>"
    m.set_content(text)
    m.add_alternative("<p>Hello <b>plans</b></p>", subtype="html")
    m.add_attachment(attachment, maintype="application", subtype="pdf", filename="plan.pdf")
    m.add_attachment(b"tiny", maintype="text", subtype="plain", filename="note.txt")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("y" * 2000)
    m.add_attachment(inner)
    return m.as_bytes()


def test_S12_blob_writer_is_content_addressed_and_atomic(tmp_path):
    folder = BlobFolder(tmp_path / "b")
    ref = folder.put(b"x" * 3_000_000)
    assert ref.sha256 == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert folder.path(ref.sha256).parent.name == ref.sha256[:2]
    assert folder.put(b"x" * 3_000_000) == ref  # the same bytes: one file
    assert list(folder.files()) == [(ref.sha256, 3_000_000)]
    with pytest.raises(RuntimeError), folder.writer() as w:
        w.write(b"half")
        raise RuntimeError("killed")
    assert list((tmp_path / "b" / "tmp").iterdir()) == []  # nothing left behind
    with pytest.raises(ValueError):
        folder.path("../../etc/passwd")


def test_S12_skeleton_parses_like_the_whole_message(tmp_path):
    """The spooled path gives the same bodies, attachments (by hash and size) and S13
    fingerprint as parsing the message in memory, with the big part in its own blob."""
    payload = os.urandom(3_000_000)
    raw = _message(payload)
    folder = BlobFolder(tmp_path / "b")
    ref = folder.put(raw)
    sk = spool.skeleton(io.BytesIO(raw), folder)
    assert len(sk.data) < 20_000 and list(sk.blobs) == [hashlib.sha256(payload).hexdigest()]
    whole, spooled = parse_message(raw), spool.load(sk, ref)
    assert (spooled.key, spooled.raw_sha256, spooled.raw_size) == (whole.key, ref.sha256, len(raw))
    assert (spooled.body_text, spooled.body_html) == (whole.body_text, whole.body_html)
    assert spooled.content_fp == whole.content_fp
    got = [(a.filename, a.content_type, a.size, a.sha256) for a in spooled.attachments]
    want = [(a.filename, a.content_type, a.size, a.sha256) for a in whole.attachments]
    assert got == want
    assert isinstance(spooled.attachments[0], spool.SpilledAttachment)
    assert folder.read(spooled.attachments[0].sha256) == payload


def test_S12_skeleton_keeps_the_start_of_a_huge_text_part(tmp_path):
    text = "".join(f"line {i} of a very long report\n" for i in range(40_000))
    raw = _message(b"pdf", text=text)
    folder = BlobFolder(tmp_path / "b")
    sk = spool.skeleton(io.BytesIO(raw), folder)
    p = spool.load(sk, folder.put(raw))
    assert p.body_text is not None and p.body_text.startswith("line 0 of")
    assert len(p.body_text) < 300_000 and "more bytes of this text are in the raw" in p.body_text
    assert any("full text is in the raw message" in w for w in p.warnings)


def test_S12_skeleton_survives_broken_mime(tmp_path):
    b64 = base64.encodebytes(os.urandom(900_000)).replace(b"\n", b"\r\n")
    raw = (
        b"From: a@c.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64[:-7]  # truncated base64, and no closing boundary
    )
    folder = BlobFolder(tmp_path / "b")
    sk = spool.skeleton(io.BytesIO(raw), folder)
    p = spool.load(sk, folder.put(raw))
    assert any("invalid base64" in w for w in p.warnings)
    assert p.attachments and p.attachments[0].size > 600_000


def test_S12_store_keeps_small_inline_and_large_in_files(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    sha = blobs.add_attachment(store, b"small")
    big = blobs.add_attachment(store, os.urandom(blobs.INLINE_MAX_BYTES + 1))
    assert store.rows("SELECT sha256, in_file FROM attachment_blobs ORDER BY in_file") == [
        (sha, False),
        (big, True),
    ]
    assert blobs.attachment_bytes(store, sha) == b"small"
    assert len(blobs.attachment_bytes(store, big) or b"") == blobs.INLINE_MAX_BYTES + 1
    st = blobs.stats(store)
    assert (st["attachments_inline"], st["attachments_in_files"], st["files"]) == (1, 1, 1)
    store.blobs.put(b"orphan" * 300_000)
    assert len(blobs.orphans(store)) == 1 and blobs.remove_orphans(store) == 1
    assert blobs.erase(store, attachments=[big]) == 1 and blobs.stats(store)["files"] == 0
    store.close()


def test_S12_an_old_store_migrates_its_inline_bytes(tmp_path):
    """A store from before the blob folder: 0020 (which reads raw bytes) runs before 0010 in
    list order; every raw message stays inline and readable."""
    path = tmp_path / "old.duckdb"
    old = Store(path, migrate=False)
    old.migrate([m for m in MIGRATIONS if m.name < "0007"])
    raw = b"From: a@b.test\r\nSubject: x\r\n\r\nhello\r\n"
    digest = hashlib.sha256(raw).hexdigest()
    old.execute(
        "INSERT INTO messages (id, subject, raw_sha256, raw_size) VALUES (?, 'x', ?, ?)",
        ["sha256:" + digest, digest, len(raw)],
    )
    old.execute("INSERT INTO message_raw VALUES (?, ?)", [digest, raw])
    old.close()
    store = Store(path)
    assert not store.pending()
    assert store.rows("SELECT size, in_file FROM message_raw") == [(len(raw), False)]
    assert blobs.raw_bytes(store, digest) == raw
    store.close()


@pytest.mark.parametrize("block", [97, 4096, 1024 * 1024])
def test_S12_skeleton_block_reads_find_every_boundary(tmp_path, monkeypatch, block):
    """Big base64 parts are read in blocks: a boundary split across two blocks is found."""
    monkeypatch.setattr(spool, "BLOCK", block)
    payloads = [os.urandom(700_000), os.urandom(650_001)]
    m = EmailMessage()
    m["From"], m["Subject"], m["Message-ID"] = "a@c.test", "two", "<two@c>"
    m.set_content("body\n")
    for i, p in enumerate(payloads):
        m.add_attachment(p, maintype="application", subtype="octet-stream", filename=f"f{i}")
    m.add_attachment(b"last", maintype="text", subtype="plain", filename="last.txt")
    raw = m.as_bytes()
    folder = BlobFolder(tmp_path / "b")
    parsed = spool.load(spool.skeleton(io.BytesIO(raw), folder), folder.put(raw))
    assert [a.sha256 for a in parsed.attachments[:2]] == [
        hashlib.sha256(p).hexdigest() for p in payloads
    ]
    assert (
        parsed.attachments[2].content == b"last"
        and parsed.content_fp == parse_message(raw).content_fp
    )
