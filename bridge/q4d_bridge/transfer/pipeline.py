"""One attempt at one item, from seedbox to library: look at the payload (resolved and
held to the roots), fetch it into staging, verify it (size, then the torrent's piece
hashes, repairing bad pieces by range), look at it again, and land it.

Knows nothing of MQTT or the queue: it reports phases and progress through a Reporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config.model import SeedboxConfig
from ..models import ItemState
from ..rules import UnsafePathError, ensure_inside
from . import payload
from .engines.base import Engine, TransferRequest, allocated_bytes, tree_size
from .errors import ErrorCode, TransferError, local_error
from .landing import Modes, apply_modes, make_private, put_in_place, remove, staging_dir
from .payload import RemoteEntry
from .remote import SeedboxSession
from .verify import Range, TorrentInfo, bad_pieces, piece_ranges

_LOGGER = logging.getLogger(__name__)

TorrentLookup = Callable[[], Awaitable[TorrentInfo | None]]
DiskFree = Callable[[Path], int]


def disk_usage_free(path: Path) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True, slots=True)
class Job:
    """What one attempt moves, and the rules it lands by."""

    item_id: str
    seedbox: SeedboxConfig
    remote_path: str
    root: Path  # the destination root; staging lives inside it
    final_path: Path
    min_free_space: int = 0
    max_repairs: int = 0
    modes: Modes = field(default_factory=Modes)


class Reporter(Protocol):
    """Where an attempt says how it is doing."""

    def phase(self, state: ItemState, remote: RemoteEntry) -> None:
        """The payload was looked at (TRANSFERRING) or fetched (VERIFYING)."""

    def progress(self, done: int) -> None:
        """Bytes in staging so far."""

    def heartbeat(self) -> None:
        """Alive, with no bytes to show (hashing, repairing): keeps the watchdog away."""


@dataclass(frozen=True, slots=True)
class Landed:
    size: int
    verified: str  # "pieces" (every piece hash matched) or "size" (no usable .torrent)
    repaired_pieces: int = 0
    skipped: tuple[str, ...] = ()  # links and special files in the payload, not fetched


async def run_transfer(
    job: Job,
    *,
    session: SeedboxSession,
    engine: Engine,
    reporter: Reporter,
    torrent: TorrentLookup | None = None,
    disk_free: DiskFree = disk_usage_free,
) -> Landed:
    engine.warm(job.seedbox)
    roots = job.seedbox.remote_roots
    stage = staging_dir(job.root, job.item_id)
    remote = await _unsafe_discards(stage, session.inspect_payload(job.remote_path, roots))
    reporter.phase(ItemState.TRANSFERRING, remote)
    target = stage / job.final_path.name
    try:
        await asyncio.to_thread(make_private, stage)
    except OSError as err:
        raise local_error(err) from err
    needed = remote.size - await asyncio.to_thread(allocated_bytes, target) + job.min_free_space
    free = disk_free(stage)
    if free < needed:
        raise TransferError(
            ErrorCode.INSUFFICIENT_SPACE,
            f"{job.root} has {free} bytes free; this payload needs {needed} (margin included)",
        )
    if target.exists() and target.is_dir() != remote.is_dir:
        await asyncio.to_thread(remove, target)  # the payload changed shape; start over
    request = TransferRequest(job.item_id, job.seedbox, remote.path, target, remote)
    await engine.fetch(request, reporter.progress)

    reporter.phase(ItemState.VERIFYING, remote)
    # Seen again while the landed bytes are checked: a link swapped in mid-transfer
    # must not reach the library.
    again = asyncio.ensure_future(session.inspect_payload(job.remote_path, roots))
    try:
        landed = await _verify(job, session, remote, target, torrent, reporter)
        await _unsafe_discards(stage, _unchanged(remote, again))
    finally:
        await _settle(again)
    try:
        await asyncio.to_thread(apply_modes, target, job.modes)
        ensure_inside(job.root, job.final_path)
        await asyncio.to_thread(put_in_place, target, job.final_path, stage, job.modes)
    except UnsafePathError as err:
        raise TransferError(ErrorCode.UNSAFE_PATH, str(err)) from err
    except OSError as err:
        raise local_error(err) from err
    return landed


async def _verify(
    job: Job,
    session: SeedboxSession,
    remote: RemoteEntry,
    target: Path,
    torrent: TorrentLookup | None,
    reporter: Reporter,
) -> Landed:
    """Size and file count, then (with a .torrent that describes this payload) every
    piece hash, re-fetching bad pieces."""
    if not target.exists():
        raise TransferError(ErrorCode.TRANSFER, "engine reported success but wrote nothing")
    size, files = await asyncio.to_thread(tree_size, target)
    if size != remote.size or (remote.is_dir and files != remote.files):
        raise TransferError(
            ErrorCode.SIZE_MISMATCH,
            f"expected {remote.size} bytes in {remote.files} file(s), "
            f"got {size} bytes in {files} file(s)",
        )
    info = await torrent() if torrent else None
    if info is not None and _describes(info, remote):
        repaired = await verify_and_repair(
            info, target, job.max_repairs, lambda ranges: session.fetch_ranges(
                remote.path, target, ranges, lambda _n: reporter.heartbeat()
            ), job.item_id, reporter.heartbeat,
        )  # fmt: skip
        return Landed(size, "pieces", repaired, remote.skipped)
    if info is not None:
        _LOGGER.warning("item %s: the .torrent lists other files; size check only", job.item_id)
    return Landed(size, "size", 0, remote.skipped)


async def _unchanged(before: RemoteEntry, again: asyncio.Future[RemoteEntry]) -> RemoteEntry:
    after = await again
    payload.unchanged(before, after)
    return after


async def _unsafe_discards(stage: Path, looking: Awaitable[RemoteEntry]) -> RemoteEntry:
    """A payload found unsafe takes its staging folder with it: what an earlier attempt
    or this one fetched may have come through a link. Other failures keep it, so a
    retry resumes."""
    try:
        return await looking
    except TransferError as err:
        if err.code is ErrorCode.UNSAFE_PATH:
            await asyncio.to_thread(remove, stage)
        raise


async def _settle(task: asyncio.Future[RemoteEntry]) -> None:
    """Stop a look-up nobody waits for any more, and drop its outcome."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TransferError):
        await task


def _describes(torrent: TorrentInfo, remote: RemoteEntry) -> bool:
    """Whether the .torrent is this payload (not one with files deselected or added)."""
    listed = {(f.rel, f.length) for f in torrent.files if not f.padding}
    return torrent.is_dir == remote.is_dir and listed == {(f.rel, f.size) for f in remote.entries}


async def verify_and_repair(
    torrent: TorrentInfo,
    target: Path,
    max_repairs: int,
    refetch: Callable[[list[Range]], Awaitable[int]],
    item_id: str,
    heartbeat: Callable[[], None],
) -> int:
    """Check every piece; re-fetch only the byte ranges of bad ones, up to max_repairs
    rounds. Returns how many pieces were repaired; raises `verify_failed` otherwise."""
    repaired: set[int] = set()
    for repair in range(max_repairs + 1):
        bad = await asyncio.to_thread(bad_pieces, target, torrent, lambda _n: heartbeat())
        if not bad:
            return len(repaired)
        if repair == max_repairs:
            break
        ranges = piece_ranges(torrent, bad)
        _LOGGER.warning(
            "item %s: %d of %d pieces failed their hash; re-fetching %d bytes (repair %d of %d)",
            item_id, len(bad), len(torrent.pieces), sum(r.length for r in ranges),
            repair + 1, max_repairs,
        )  # fmt: skip
        await refetch(ranges)
        repaired.update(bad)
    raise TransferError(
        ErrorCode.VERIFY_FAILED,
        f"{len(bad)} of {len(torrent.pieces)} pieces still fail their hash "
        f"after {max_repairs} repair(s)",
    )
