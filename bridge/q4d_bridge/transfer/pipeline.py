"""One attempt at one item, from seedbox to library: look at the payload (resolved and
held to the roots), fetch it into staging, verify it (size, then the torrent's piece
hashes, repairing bad pieces by range), look at it again, and land it. The .torrent is
looked up while the payload is fetched; once it is in, an engine that writes the bytes
itself has its pieces hashed as they arrive (streaming.py), and only the pieces that
were not are read back.

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
from ..postprocess.plan import PostPlan
from ..rules import UnsafePathError
from . import payload
from .checking import check_pieces, describes
from .engines.base import Engine, TransferRequest, allocated_bytes, tree_size
from .errors import ErrorCode, TransferError, local_error
from .excludes import payload_name, without_excluded
from .landing import Modes, discard, make_private, remove, staging_dir
from .ownership import land, modes_for, probe, resolve
from .payload import RemoteEntry
from .remote import SeedboxSession
from .streaming import PieceStream, PieceTally, StreamSlot
from .verify import TorrentInfo

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
    stream_verify: bool = True  # hash pieces as the engine writes them (streaming.py)
    modes: Modes = field(default_factory=Modes)
    # Fixed on the item at intake: the files left on the seedbox (`exclude`), and the
    # owner, group and modes of what lands (`ownership`; its modes replace `modes`).
    plan: PostPlan = field(default_factory=PostPlan)


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
    ids = resolve(job.plan.ownership)  # an unknown user or group fails before any fetch
    stage = staging_dir(job.root, job.item_id)
    remote = await _unsafe_discards(stage, _inspect(job, session))
    reporter.phase(ItemState.TRANSFERRING, remote)
    target = stage / job.final_path.name
    try:
        await asyncio.to_thread(make_private, stage)
        await asyncio.to_thread(probe, stage, ids)
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
    lookup = asyncio.ensure_future(torrent()) if torrent is not None else None
    slot = StreamSlot()
    if lookup is not None:
        lookup.add_done_callback(_retrieved)
        if job.stream_verify:
            lookup.add_done_callback(lambda done: _attach(slot, done, remote))
    try:
        written = slot.written if lookup is not None and job.stream_verify else None
        request = TransferRequest(job.item_id, job.seedbox, remote.path, target, remote, written)
        await engine.fetch(request, reporter.progress)

        reporter.phase(ItemState.VERIFYING, remote)
        # Seen again while the landed bytes are checked: a link swapped in mid-transfer
        # must not reach the library.
        again = asyncio.ensure_future(_inspect(job, session))
        try:
            landed = await _verify(job, session, remote, target, lookup, slot, reporter)
            await _unsafe_discards(stage, _unchanged(remote, again))
        finally:
            await _settle(again)
    finally:
        await slot.close()
        if lookup is not None:
            lookup.cancel()  # no effect once it is done
    modes = modes_for(job.modes, job.plan.ownership)
    try:
        await asyncio.to_thread(land, target, job.final_path, job.root, modes, ids)
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
    lookup: asyncio.Future[TorrentInfo | None] | None,
    slot: StreamSlot,
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
    info = await lookup if lookup is not None else None
    if info is not None and describes(info, remote):
        streamed = await slot.finish()
        repaired = await check_pieces(
            info, remote, target, session, job.max_repairs, job.item_id, reporter.heartbeat,
            streamed,
        )  # fmt: skip
        return Landed(size, "pieces", repaired, remote.skipped)
    if info is not None:
        _LOGGER.warning("item %s: the .torrent lists other files; size check only", job.item_id)
    return Landed(size, "size", 0, remote.skipped)


def _attach(
    slot: StreamSlot, lookup: asyncio.Future[TorrentInfo | None], remote: RemoteEntry
) -> None:
    """Start hashing what the engine writes from now on, if the .torrent is this payload's."""
    if lookup.cancelled() or lookup.exception() is not None:
        return
    info = lookup.result()
    if info is not None and describes(info, remote):
        slot.attach(PieceStream(PieceTally(info, {f.rel for f in remote.excluded})))


def _retrieved(lookup: asyncio.Future[TorrentInfo | None]) -> None:
    """A look-up nobody awaited (the fetch failed) keeps its error out of the log:
    the attempt's own failure is what counts."""
    if not lookup.cancelled():
        lookup.exception()


async def _inspect(job: Job, session: SeedboxSession) -> RemoteEntry:
    """The payload as the engines fetch it: resolved, held to the roots, listed, and
    without what the rule excludes."""
    entry = await session.inspect_payload(job.remote_path, job.seedbox.remote_roots)
    return without_excluded(entry, job.plan.exclude, payload_name(job.remote_path))


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
            await asyncio.to_thread(discard, stage)
        raise


async def _settle(task: asyncio.Future[RemoteEntry]) -> None:
    """Stop a look-up nobody waits for any more, and drop its outcome."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TransferError):
        await task
