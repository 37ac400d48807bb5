"""The piece check of a fetched payload against its .torrent, with repairs by byte range,
also when the rule excluded some of its files.

With excludes, a piece that holds only excluded bytes (and padding) is skipped: nothing
of it was fetched. A piece that straddles an excluded file and a fetched one is still
checked: the excluded part of that piece (at most a piece on each side of each excluded
file) is read from the seedbox into a sparse scratch file in the item's staging folder,
beside the payload and never inside it, and removed once the check is over. So every
fetched byte is covered by a piece hash, and nothing excluded ever lands.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path

from .errors import ErrorCode, TransferError, local_error
from .landing import remove
from .payload import RemoteEntry, RemoteFile
from .remote import SeedboxSession
from .streaming import Streamed
from .verify import Locate, Range, TorrentInfo, bad_pieces, piece_ranges

_LOGGER = logging.getLogger(__name__)
SCRATCH_DIR = ".q4d-excluded"

Refetch = Callable[[list[Range]], Awaitable[int]]


def describes(torrent: TorrentInfo, remote: RemoteEntry) -> bool:
    """Whether the .torrent is this payload (not one with files deselected or added);
    the files the rule excluded count as the payload's."""
    listed = {(f.rel, f.length) for f in torrent.files if not f.padding}
    files = {(f.rel, f.size) for f in (*remote.entries, *remote.excluded)}
    return torrent.is_dir == remote.is_dir and listed == files


def excluded_pieces(torrent: TorrentInfo, excluded: Collection[str]) -> tuple[set[int], list[int]]:
    """Pieces with no fetched byte (to skip), and pieces that hold fetched and
    excluded bytes both (to check with the excluded part read from the seedbox)."""
    fetched: set[int] = set()
    touched: set[int] = set()
    length = torrent.piece_length
    for tfile in torrent.files:
        if tfile.padding or not tfile.length:
            continue
        span = range(tfile.offset // length, (tfile.offset + tfile.length - 1) // length + 1)
        (touched if tfile.rel in excluded else fetched).update(span)
    return set(range(len(torrent.pieces))) - fetched, sorted(fetched & touched)


async def check_pieces(
    torrent: TorrentInfo,
    remote: RemoteEntry,
    target: Path,
    session: SeedboxSession,
    max_repairs: int,
    item_id: str,
    heartbeat: Callable[[], None],
    streamed: Streamed | None = None,
) -> int:
    """Check every piece with a fetched byte, repairing bad ones; returns how many
    pieces were repaired (see verify_and_repair)."""

    def fetch(root: Path, ranges: Sequence[Range]) -> Awaitable[int]:
        return session.fetch_ranges(remote.path, root, ranges, lambda _n: heartbeat())

    if not remote.excluded:
        return await verify_and_repair(
            torrent, target, max_repairs, lambda ranges: fetch(target, ranges), item_id, heartbeat,
            streamed=streamed,
        )  # fmt: skip
    excluded = {f.rel for f in remote.excluded}
    scratch = target.parent / SCRATCH_DIR
    skip, straddling = excluded_pieces(torrent, excluded)

    async def refetch(ranges: list[Range]) -> int:
        outside = [r for r in ranges if r.rel in excluded]
        inside = [r for r in ranges if r.rel not in excluded]
        return (await fetch(scratch, outside) if outside else 0) + (
            await fetch(target, inside) if inside else 0
        )

    def locate(rel: str) -> Path:
        return (scratch if rel in excluded else target) / rel

    try:
        try:
            await asyncio.to_thread(_sparse_files, scratch, remote.excluded)
        except OSError as err:
            raise local_error(err) from err
        edges = [r for r in piece_ranges(torrent, straddling) if r.rel in excluded]
        await fetch(scratch, edges)
        _LOGGER.debug(
            "item %s: %d pieces only hold excluded files; %d straddle (%d excluded bytes read)",
            item_id, len(skip), len(straddling), sum(r.length for r in edges),
        )  # fmt: skip
        return await verify_and_repair(
            torrent, target, max_repairs, refetch, item_id, heartbeat,
            skip=skip, locate=locate, streamed=streamed,
        )  # fmt: skip
    finally:
        await asyncio.to_thread(remove, scratch)


def _sparse_files(scratch: Path, files: Sequence[RemoteFile]) -> None:
    """Each excluded file at its full length, all holes: only the straddling pieces'
    bytes are written, at their offsets, and the piece check reads them in place."""
    for remote_file in files:
        path = scratch / remote_file.rel
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, remote_file.size)
        finally:
            os.close(fd)


async def verify_and_repair(
    torrent: TorrentInfo,
    target: Path,
    max_repairs: int,
    refetch: Refetch,
    item_id: str,
    heartbeat: Callable[[], None],
    *,
    skip: Collection[int] = (),
    locate: Locate | None = None,
    streamed: Streamed | None = None,
) -> int:
    """Check every piece (but those in skip); re-fetch only the byte ranges of bad
    ones, up to max_repairs rounds, then check those again. Returns how many pieces
    were repaired; raises `verify_failed` otherwise. Pieces the stream settled while
    they arrived are not read back: a good one is done, a bad one is repaired."""
    repaired: set[int] = set()
    checked = len(torrent.pieces) - len(skip)
    known_bad = streamed.bad if streamed is not None else frozenset()
    unread = {*skip, *known_bad, *(streamed.good if streamed is not None else ())}
    for repair in range(max_repairs + 1):
        found = await asyncio.to_thread(
            bad_pieces, target, torrent, lambda _n: heartbeat(), skip=unread, locate=locate
        )
        bad = sorted({*known_bad, *found})
        if not bad:
            return len(repaired)
        if repair == max_repairs:
            break
        ranges = piece_ranges(torrent, bad)
        _LOGGER.warning(
            "item %s: %d of %d pieces failed their hash; re-fetching %d bytes (repair %d of %d)",
            item_id, len(bad), checked, sum(r.length for r in ranges), repair + 1, max_repairs,
        )  # fmt: skip
        await refetch(ranges)
        repaired.update(bad)
        # A repair writes inside the bad pieces only: the others stay as checked.
        known_bad = frozenset()
        unread = set(range(len(torrent.pieces))) - set(bad)
    raise TransferError(
        ErrorCode.VERIFY_FAILED,
        f"{len(bad)} of {checked} pieces still fail their hash after {max_repairs} repair(s)",
    )
