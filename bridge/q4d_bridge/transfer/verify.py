"""Integrity against the torrent itself: v1 SHA-1 piece hashes over the landed payload.

Pieces run across file boundaries; BEP 47 padding files are not on disk and count as
zeros. A failed check names the bad pieces and the byte ranges of each file they cover,
so a repair re-fetches only those ranges. Pure: no network; bencode via fastbencode.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import fastbencode

from ..rules import UnsafePathError, check_name

READ_BLOCK = 1024 * 1024
Locate = Callable[[str], Path]  # a file's path in the torrent -> where its bytes are


class TorrentError(ValueError):
    """A .torrent that cannot be used for verification."""


@dataclass(frozen=True, slots=True)
class TorrentFile:
    rel: str  # "" for a single-file torrent
    offset: int  # where the file starts in the torrent's byte stream
    length: int
    padding: bool


@dataclass(frozen=True, slots=True)
class TorrentInfo:
    info_hash: str
    name: str
    piece_length: int
    pieces: tuple[bytes, ...]
    files: tuple[TorrentFile, ...]
    is_dir: bool

    @property
    def total_length(self) -> int:
        return sum(f.length for f in self.files)

    @property
    def payload_size(self) -> int:
        """Bytes on disk: padding files excluded."""
        return sum(f.length for f in self.files if not f.padding)

    @classmethod
    def from_bytes(cls, data: bytes) -> TorrentInfo:
        try:
            meta = fastbencode.bdecode(data)
        except Exception as err:  # the decoder raises several types on bad input
            raise TorrentError(f"not a bencoded .torrent: {err}") from err
        info = meta.get(b"info") if isinstance(meta, dict) else None
        if not isinstance(info, dict):
            raise TorrentError("no info dictionary")
        piece_length = info.get(b"piece length")
        pieces = info.get(b"pieces")
        name = info.get(b"name")
        if not isinstance(piece_length, int) or piece_length <= 0:
            raise TorrentError("missing or invalid 'piece length' (a v2-only torrent?)")
        if not isinstance(pieces, bytes) or len(pieces) % 20:
            raise TorrentError("missing or invalid v1 'pieces'")
        if not isinstance(name, bytes):
            raise TorrentError("missing 'name'")
        files = _files(info)
        info_hash = hashlib.sha1(fastbencode.bencode(info), usedforsecurity=False).hexdigest()
        torrent = cls(
            info_hash=info_hash,
            name=name.decode("utf-8", "surrogateescape"),
            piece_length=piece_length,
            pieces=tuple(pieces[i : i + 20] for i in range(0, len(pieces), 20)),
            files=files,
            is_dir=b"files" in info,
        )
        expected = -(-torrent.total_length // piece_length)
        if len(torrent.pieces) != expected:
            raise TorrentError(f"{len(torrent.pieces)} piece hashes for {expected} pieces")
        return torrent


def _files(info: dict[bytes, object]) -> tuple[TorrentFile, ...]:
    entries = info.get(b"files")
    if entries is None:
        length = info.get(b"length")
        if not isinstance(length, int) or length < 0:
            raise TorrentError("single-file torrent without a valid 'length'")
        return (TorrentFile("", 0, length, False),)
    if not isinstance(entries, list):
        raise TorrentError("'files' is not a list")
    files: list[TorrentFile] = []
    offset = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise TorrentError("a 'files' entry is not a dictionary")
        length, parts = entry.get(b"length"), entry.get(b"path")
        if not isinstance(length, int) or length < 0 or not isinstance(parts, list) or not parts:
            raise TorrentError("a 'files' entry lacks a valid length or path")
        try:
            names = [check_name(p.decode("utf-8", "surrogateescape")) for p in parts]
        except (AttributeError, UnsafePathError) as err:
            raise TorrentError(f"unsafe path in torrent: {err}") from err
        attr = entry.get(b"attr", b"")
        padding = isinstance(attr, bytes) and b"p" in attr
        files.append(TorrentFile(posixpath.join(*names), offset, length, padding))
        offset += length
    return tuple(files)


@dataclass(frozen=True, slots=True)
class Range:
    rel: str
    offset: int
    length: int


def _stream(locate: Locate, torrent: TorrentInfo, start: int, end: int) -> Iterator[bytes]:
    """Bytes start..end of the torrent's byte stream as stored where `locate` says:
    files in order, padding as zeros, missing or short files as zeros (their pieces
    then fail)."""
    zeros = bytes(READ_BLOCK)
    for tfile in torrent.files:
        lo, hi = max(start, tfile.offset), min(end, tfile.offset + tfile.length)
        if lo >= hi:
            continue
        left = hi - lo
        if not tfile.padding:
            try:
                with locate(tfile.rel).open("rb", buffering=0) as handle:
                    handle.seek(lo - tfile.offset)
                    while left > 0 and (block := handle.read(min(READ_BLOCK, left))):
                        left -= len(block)
                        yield block
            except FileNotFoundError:
                pass
        while left > 0:
            step = min(READ_BLOCK, left)
            left -= step
            yield zeros[:step]


def _runs(count: int, skip: Collection[int]) -> Iterator[tuple[int, int]]:
    """Consecutive piece indexes not skipped, as [first, end) runs."""
    first: int | None = None
    for index in range(count + 1):
        if index < count and index not in skip:
            first = index if first is None else first
        elif first is not None:
            yield first, index
            first = None


def bad_pieces(
    root: Path,
    torrent: TorrentInfo,
    on_block: Callable[[int], None] | None = None,
    *,
    skip: Collection[int] = (),
    locate: Locate | None = None,
) -> list[int]:
    """Indexes of pieces whose SHA-1 does not match what landed at root; on_block gets
    the size of each block hashed (a long check is progress, not a stall). Pieces in
    `skip` are neither read nor checked; `locate` says where a file's bytes are (by
    default under root)."""
    where = locate or (lambda rel: root / rel if rel else root)
    bad: list[int] = []
    for first, end in _runs(len(torrent.pieces), frozenset(skip)):
        index, filled = first, 0
        digest = hashlib.sha1(usedforsecurity=False)
        last = min(end * torrent.piece_length, torrent.total_length)
        for block in _stream(where, torrent, first * torrent.piece_length, last):
            if on_block is not None:
                on_block(len(block))
            view = memoryview(block)
            while view:
                take = min(len(view), torrent.piece_length - filled)
                digest.update(view[:take])
                view = view[take:]
                filled += take
                if filled == torrent.piece_length:
                    if digest.digest() != torrent.pieces[index]:
                        bad.append(index)
                    index, filled = index + 1, 0
                    digest = hashlib.sha1(usedforsecurity=False)
        if filled and digest.digest() != torrent.pieces[index]:
            bad.append(index)
    return bad


def piece_ranges(torrent: TorrentInfo, pieces: list[int]) -> list[Range]:
    """Byte ranges, per real file, that the given pieces cover (merged where adjacent)."""
    ranges: list[Range] = []
    for index in sorted(pieces):
        start = index * torrent.piece_length
        end = min(start + torrent.piece_length, torrent.total_length)
        for tfile in torrent.files:
            lo, hi = max(start, tfile.offset), min(end, tfile.offset + tfile.length)
            if tfile.padding or lo >= hi:
                continue
            rng = Range(tfile.rel, lo - tfile.offset, hi - lo)
            last = ranges[-1] if ranges else None
            if last and last.rel == rng.rel and last.offset + last.length == rng.offset:
                ranges[-1] = Range(last.rel, last.offset, last.length + rng.length)
            else:
                ranges.append(rng)
    return ranges
