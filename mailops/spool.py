"""Messages too big to hold in memory (S12): spooled to the blob folder, parsed from a skeleton.

A message over ``SPOOL_BYTES`` is never held whole. ``spool_message`` copies it from the
server into the blob folder by partial fetches (8 MB at a time), hashing as it goes: that
file IS the stored raw message. ``skeleton`` then reads the file once, line by line, and
writes a small copy of it in which every large MIME leaf is replaced:

- a non-text leaf (the 45 MB PDF) is decoded as it streams (base64, quoted-printable or as
  is) into its own blob, and the skeleton keeps a one-line marker
  (``mailops-blob:<sha256>:<size>``, transfer encoding 7bit);
- a text leaf keeps its first ``TEXT_KEEP_BYTES`` decoded, with a parse warning saying the
  full text is in the raw message.

``parse_message`` (unchanged) parses the skeleton: headers, bodies, warnings, attachment
names and types; ``load`` swaps each marker attachment for one that points at its blob and
sets the raw hash and size of the real message. Peak memory is one fetch chunk plus one
decode chunk plus the skeleton (a few MB), whatever the size of the message.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import IO, Any

from mailops.parse import Attachment, HeaderInfo, ParsedMessage, parse_message
from mailops.store.blobs import BlobFolder, BlobRef, BlobWriter

__all__ = [
    "MARKER",
    "SPOOL_BYTES",
    "SpilledAttachment",
    "Skeleton",
    "load",
    "parse_file",
    "skeleton",
    "spool_message",
]

SPOOL_BYTES = 4 * 1024 * 1024  # messages larger than this are spooled, never held whole
SPILL_BYTES = 512 * 1024  # a MIME leaf body larger than this leaves the skeleton
SKELETON_BUDGET = 4 * 1024 * 1024  # past this much skeleton, leaves over SMALL_SPILL leave too
SMALL_SPILL = 16 * 1024
TEXT_KEEP_BYTES = 256 * 1024
DECODE_CHUNK = 1024 * 1024
MARKER = b"mailops-blob:"

_HEADERS = BytesHeaderParser(policy=compat32)
_B64_JUNK = bytes(c for c in range(256) if not (c < 128 and chr(c).isalnum()) and c not in b"+/=")
_MARKER_RE = re.compile(rb"^mailops-blob:([0-9a-f]{64}):(\d+)\s*$")


@dataclass
class SpilledAttachment(Attachment):
    """An attachment whose content is in the blob folder, not in memory."""

    blob: BlobRef | None = None

    @property
    def size(self) -> int:
        return self.blob.size if self.blob is not None else len(self.content)

    @property
    def sha256(self) -> str:
        return self.blob.sha256 if self.blob is not None else super().sha256


def spool_message(
    fetch_to: Callable[[Callable[[bytes], object]], int], folder: BlobFolder
) -> BlobRef:
    """Copy a message into the blob folder with FETCH_TO (``imap.commands.fetch_body_to``
    bound to one UID, given where to write) and return its blob; nothing is kept when the
    fetch fails."""
    with folder.writer() as w:
        fetch_to(w.write)
        return w.commit()


# -- the skeleton ----------------------------------------------------------------------------
@dataclass
class Skeleton:
    data: bytes
    blobs: dict[str, BlobRef] = field(default_factory=dict)  # sha -> blob, spilled leaves
    types: dict[str, str] = field(default_factory=dict)  # sha -> message/* type it had
    warnings: list[str] = field(default_factory=list)


class _Decoder:
    """Streaming transfer decoding of one leaf into a sink (a blob, or a bounded buffer)."""

    def __init__(self, cte: str, sink: Callable[[bytes], Any]) -> None:
        self.cte, self.sink = cte, sink
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.carry = b""
        self.eol = b""  # the last line ending: it belongs to the boundary that follows
        self.bad_base64 = False

    def feed(self, line: bytes) -> None:
        if self.cte == "base64":
            self.pending.append(line)
        else:
            body = line.rstrip(b"\r\n")
            self.pending.append(self.eol + body)
            self.eol = line[len(body) :]
        self.pending_size += len(line)
        if self.pending_size >= DECODE_CHUNK:
            self._flush(final=False)

    def feed_block(self, data: bytes) -> None:
        """Base64 only: any slice of the body (line ends do not matter there)."""
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= DECODE_CHUNK:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        data = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        if self.cte == "base64":
            data = self.carry + data.translate(None, _B64_JUNK)
            cut = len(data) if final else len(data) - len(data) % 4
            data, self.carry = data[:cut], data[cut:]
            if final and len(data) % 4:
                self.bad_base64 = True
                data = data.rstrip(b"=")
                data += b"=" * (-len(data) % 4)
            try:
                out = binascii.a2b_base64(data)
            except binascii.Error:
                self.bad_base64 = True
                out = binascii.a2b_base64(data[: len(data) - len(data) % 4] or b"")
        elif self.cte == "quoted-printable":
            out = binascii.a2b_qp(data)
        else:
            out = data
        if out:
            self.sink(out)

    def close(self) -> None:
        self._flush(final=True)


_MESSAGE_TYPE = re.compile(rb"^(\s*)message/[\w.+-]+", re.I)


def _rewrite_headers(headers: bytes, cte: str, opaque: bool = False) -> bytes:
    """HEADERS without Content-Transfer-Encoding, plus ``Content-Transfer-Encoding: CTE``;
    OPAQUE turns a message/* type into application/octet-stream (so the stdlib does not
    parse the marker as an enclosed message's header; ``load`` restores the type)."""
    lines = headers.splitlines(keepends=True)
    out: list[bytes] = []
    skipping = False
    for line in lines:
        if line in (b"\r\n", b"\n"):
            continue
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        name, _, value = line.partition(b":")
        skipping = name.strip().lower() == b"content-transfer-encoding"
        if opaque and name.strip().lower() == b"content-type":
            line = name + b":" + _MESSAGE_TYPE.sub(rb"\1application/octet-stream", value)
        if not skipping:
            out.append(line)
    eol = b"\r\n"
    out += [b"Content-Transfer-Encoding: " + cte.encode() + eol, eol]
    return b"".join(out)


class _Leaf:
    def __init__(self, headers: bytes, path: str) -> None:
        self.headers = headers
        self.path = path
        self.lines: list[bytes] = []
        self.size = 0
        h = _HEADERS.parsebytes(headers)
        self.cte = str(h.get("Content-Transfer-Encoding", "") or "").strip().lower()
        self.maintype = h.get_content_maintype()
        self.content_type = h.get_content_type()
        self.spilled = False
        self.decoder: _Decoder | None = None
        self.writer: BlobWriter | None = None
        self.text: list[bytes] = []
        self.text_size = 0
        self.decoded = 0


class _Builder:
    def __init__(self, folder: BlobFolder, spill_bytes: int) -> None:
        self.folder = folder
        self.spill_bytes = spill_bytes
        self.out: list[bytes] = []
        self.out_size = 0
        self.sk = Skeleton(b"")

    def emit(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)

    def limit(self) -> int:
        return self.spill_bytes if self.out_size < SKELETON_BUDGET else SMALL_SPILL

    # a leaf's body arrives line by line; it stays in memory until it passes the limit
    def body_line(self, leaf: _Leaf, line: bytes) -> None:
        if leaf.spilled:
            assert leaf.decoder is not None
            leaf.decoder.feed(line)
            return
        leaf.lines.append(line)
        leaf.size += len(line)
        if leaf.size > self.limit():
            self._spill(leaf)

    def _spill(self, leaf: _Leaf) -> None:
        leaf.spilled = True
        if leaf.maintype == "text":

            def keep(data: bytes) -> None:
                leaf.decoded += len(data)
                if leaf.text_size < TEXT_KEEP_BYTES:
                    piece = data[: TEXT_KEEP_BYTES - leaf.text_size]
                    leaf.text.append(piece)
                    leaf.text_size += len(piece)

            leaf.decoder = _Decoder(leaf.cte, keep)
        else:
            leaf.writer = self.folder.writer()

            def to_blob(data: bytes) -> None:
                assert leaf.writer is not None
                leaf.writer.write(data)
                leaf.decoded += len(data)

            leaf.decoder = _Decoder(leaf.cte, to_blob)
        for held in leaf.lines:
            leaf.decoder.feed(held)
        leaf.lines = []

    def end_leaf(self, leaf: _Leaf) -> None:
        if not leaf.spilled:
            self.emit(leaf.headers)
            self.emit(b"".join(leaf.lines))
            return
        assert leaf.decoder is not None
        leaf.decoder.close()
        where = f"part {leaf.path}" if leaf.path else "the body"
        if leaf.decoder.bad_base64:
            self.sk.warnings.append(f"{where}: invalid base64 (length); decoded best effort")
        if leaf.writer is None:  # text: the beginning stays readable, the rest is in the raw
            text = b"".join(leaf.text)
            cut = text.rfind(b"\n")
            text = text[: cut + 1] if cut > 0 else text
            note = (
                f"\r\n[... {leaf.decoded - len(text):,} more bytes of this text are in the"
                " raw message]\r\n"
            ).encode()
            self.sk.warnings.append(
                f"{where}: text of {leaf.decoded:,} bytes shown up to {len(text):,} bytes;"
                " the full text is in the raw message"
            )
            self.emit(_rewrite_headers(leaf.headers, "8bit"))
            self.emit(text + note)
            return
        ref = leaf.writer.commit()
        self.sk.blobs[ref.sha256] = ref
        if leaf.maintype == "message":
            self.sk.types[ref.sha256] = leaf.content_type
        self.emit(_rewrite_headers(leaf.headers, "7bit", opaque=leaf.maintype == "message"))
        self.emit(MARKER + f"{ref.sha256}:{ref.size}".encode() + b"\r\n")

    def abort(self, leaf: _Leaf | None) -> None:
        if leaf is not None and leaf.writer is not None:
            leaf.writer.abort()


def _boundary_of(headers: bytes) -> bytes | None:
    h = _HEADERS.parsebytes(headers)
    if h.get_content_maintype() != "multipart":
        return None
    b = h.get_boundary()
    return b.encode("utf-8", "surrogateescape") if b else None


BLOCK = 1024 * 1024


def _stream_to_boundary(raw: IO[bytes], dec: _Decoder, stack: list[bytes]) -> None:
    """A spilled base64 leaf: feed its body to DEC a block at a time (C speed, not a line
    at a time) up to the next line that is a boundary of STACK, and leave RAW positioned at
    that line (or at the end)."""
    marks = [b"--" + m for m in stack]
    carry = b""
    base = raw.tell()  # file offset of carry[0]
    while True:
        block = raw.read(BLOCK)
        buf = carry + block
        i, undecided = 0, -1
        while (j := buf.find(b"\n--", i)) >= 0:
            k = buf.find(b"\n", j + 1)
            if k < 0 and block:  # that line is not whole yet: read on
                undecided = j
                break
            line = buf[j + 1 : k if k >= 0 else len(buf)].rstrip(b"\r \t")
            if any(line in (m, m + b"--") for m in marks):
                dec.feed_block(buf[: j + 1])
                raw.seek(base + j + 1)
                return
            i = j + 1
        if not block:
            dec.feed_block(buf)
            return
        cut = buf.rfind(b"\n")
        keep = cut if cut >= 0 and len(buf) - cut <= 1024 else len(buf)
        if undecided >= 0:
            keep = min(keep, undecided)
        dec.feed_block(buf[:keep])
        base += keep
        carry = buf[keep:]


def skeleton(
    raw: IO[bytes], folder: BlobFolder, *, spill_bytes: int = SPILL_BYTES, max_depth: int = 50
) -> Skeleton:
    """One pass over RAW (a message file): the skeleton and the spilled leaves' blobs."""
    b = _Builder(folder, spill_bytes)
    stack: list[bytes] = []  # boundaries of the open multiparts
    counters: list[int] = []  # part number inside each open multipart
    headers: list[bytes] = []
    header_size = 0
    mode = "headers"  # headers | body | filler (preamble / epilogue of a multipart)
    leaf: _Leaf | None = None

    def path() -> str:
        return ".".join(str(c) for c in counters)

    def end_headers() -> None:
        nonlocal mode, leaf, headers, header_size
        block = b"".join(headers)
        headers, header_size = [], 0
        boundary = _boundary_of(block) if len(stack) < max_depth else None
        if boundary:
            b.emit(block)
            stack.append(boundary)
            counters.append(0)
            mode = "filler"
        else:
            leaf = _Leaf(block, path())
            mode = "body"

    seekable = raw.seekable()
    try:
        while True:
            if (
                mode == "body"
                and leaf is not None
                and leaf.spilled
                and leaf.cte == "base64"
                and stack
                and seekable
            ):
                assert leaf.decoder is not None
                _stream_to_boundary(raw, leaf.decoder, stack)
            line = raw.readline(1 << 16)
            if not line:
                break
            if stack and line.startswith(b"--"):
                mark = line.rstrip(b"\r\n \t")
                hit = next(
                    (
                        i
                        for i in range(len(stack) - 1, -1, -1)
                        if mark in (b"--" + stack[i], b"--" + stack[i] + b"--")
                    ),
                    None,
                )
                if hit is not None:
                    if mode == "headers":  # a part without a blank line after its headers
                        headers.append(b"\r\n")
                        end_headers()
                    if leaf is not None:
                        b.end_leaf(leaf)
                        leaf = None
                    del stack[hit + 1 :]
                    del counters[hit + 1 :]
                    b.emit(line)
                    if mark.endswith(b"--") and mark == b"--" + stack[hit] + b"--":
                        stack.pop()
                        counters.pop()
                        mode = "filler"
                    else:
                        counters[-1] += 1
                        mode = "headers"
                    continue
            if mode == "headers":
                headers.append(line)
                header_size += len(line)
                if line in (b"\r\n", b"\n") or header_size > 256 * 1024:
                    end_headers()
            elif mode == "body":
                assert leaf is not None
                b.body_line(leaf, line)
            else:
                b.emit(line)
        if mode == "headers" and headers:
            end_headers()
        if leaf is not None:
            b.end_leaf(leaf)
            leaf = None
    except BaseException:
        b.abort(leaf)
        raise
    b.sk.data = b"".join(b.out)
    return b.sk


# -- parse ------------------------------------------------------------------------------------
def load(sk: Skeleton, raw: BlobRef, headers: HeaderInfo | None = None, **kw: Any) -> ParsedMessage:
    """The ParsedMessage of a spooled message: parsed from its skeleton, its attachments
    pointing at their blobs, its raw hash and size those of the real message."""
    parsed = parse_message(sk.data, headers, **kw)
    skeleton_sha = parsed.raw_sha256
    parsed.raw_sha256, parsed.raw_size = raw.sha256, raw.size
    if parsed.key == "sha256:" + skeleton_sha:  # keyed by the raw hash: the real one
        parsed.key = "sha256:" + raw.sha256
    out: list[Attachment] = []
    for a in parsed.attachments:
        m = _MARKER_RE.match(a.content) if a.content.startswith(MARKER) else None
        ref = sk.blobs.get(m.group(1).decode()) if m else None
        if ref is None:
            out.append(a)
            continue
        values = {f.name: getattr(a, f.name) for f in fields(a) if f.init}
        values["content"] = b""
        values["content_type"] = sk.types.get(ref.sha256, a.content_type)
        out.append(SpilledAttachment(**values, blob=ref))
    parsed.attachments = out
    parsed.warnings = list(dict.fromkeys([*parsed.warnings, *sk.warnings]))
    return parsed


def parse_file(
    path: str | Path, raw: BlobRef, folder: BlobFolder, headers: HeaderInfo | None = None, **kw: Any
) -> ParsedMessage:
    with open(path, "rb") as f:
        sk = skeleton(f, folder)
    return load(sk, raw, headers, **kw)
