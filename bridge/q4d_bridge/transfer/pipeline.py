"""One item's journey from seedbox to library: stat, fetch into staging, verify (size,
then the torrent's piece hashes, repairing bad pieces by range), publish.

The payload becomes visible at its final path only by an atomic rename after it
verified, so Sonarr/Radarr/Plex never see a partial or corrupt file. Knows nothing of
MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..config.model import SeedboxConfig
from ..models import ItemState
from ..rules import UnsafePathError, ensure_inside
from . import payload
from .engines.base import Engine, TransferRequest, allocated_bytes, tree_size
from .errors import ErrorCode, TransferError, local_error
from .payload import RemoteEntry
from .remote import SeedboxSession
from .verify import Range, TorrentInfo, bad_pieces, piece_ranges

_LOGGER = logging.getLogger(__name__)
STAGING_DIR = ".q4d-partial"


TorrentLookup = Callable[[], Awaitable[TorrentInfo | None]]


@dataclass(frozen=True, slots=True)
class Landed:
    size: int
    verified: str  # "pieces" (every piece hash matched) or "size" (no usable .torrent)
    repaired_pieces: int = 0
    skipped: tuple[str, ...] = ()  # links and special files in the payload, not fetched


@dataclass(frozen=True, slots=True)
class Modes:
    """The permissions a landed payload gets, whatever it had on the seedbox."""

    file: int = 0o644
    dir: int = 0o755

    def without(self, umask: int) -> Modes:
        return Modes(self.file & ~umask, self.dir & ~umask)


def process_umask() -> int:
    """The process umask, read without changing it (os.umask can only swap it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)  # not on Linux: swap and restore, at start-up only
    os.umask(current)
    return current


def apply_modes(target: Path, modes: Modes) -> None:
    """Give everything that landed the configured modes (the seedbox's are never
    copied). Engines create no links; one found here is removed, never followed."""
    if target.is_symlink():
        raise UnsafePathError(f"{target} is a symlink; engines never create one")
    if not target.is_dir():
        target.chmod(modes.file)
        return
    target.chmod(modes.dir)
    for dirpath, dirs, files in os.walk(target):
        for name, mode in [*((d, modes.dir) for d in dirs), *((f, modes.file) for f in files)]:
            path = Path(dirpath, name)
            if path.is_symlink():
                _LOGGER.warning("removing a symlink from a landed payload: %s", path)
                path.unlink()
            else:
                path.chmod(mode)


def _make_private(stage: Path) -> None:
    """The staging folder is the bridge's alone: partial payloads are nobody's to read."""
    stage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stage.parent.chmod(0o700)
    stage.mkdir(mode=0o700, exist_ok=True)


def staging_dir(root: Path, item_id: str) -> Path:
    """Inside the destination root, so the final rename never crosses filesystems."""
    return root / STAGING_DIR / item_id


async def run_transfer(
    *,
    item_id: str,
    seedbox: SeedboxConfig,
    session: SeedboxSession,
    engine: Engine,
    remote_path: str,
    root: Path,
    final_path: Path,
    on_phase: Callable[[ItemState, RemoteEntry], None],
    on_progress: Callable[[int], None],
    min_free_space: int = 0,
    torrent: TorrentLookup | None = None,
    max_repairs: int = 0,
    heartbeat: Callable[[], None] = lambda: None,
    modes: Modes = Modes(),
    disk_free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
) -> Landed:
    engine.warm(seedbox)
    roots = seedbox.remote_roots
    stage = staging_dir(root, item_id)
    remote = await _unsafe_discards(stage, session.inspect_payload(remote_path, roots))
    on_phase(ItemState.TRANSFERRING, remote)
    target = stage / final_path.name
    try:
        await asyncio.to_thread(_make_private, stage)
    except OSError as err:
        raise local_error(err) from err
    needed = remote.size - await asyncio.to_thread(allocated_bytes, target) + min_free_space
    free = disk_free(stage)
    if free < needed:
        raise TransferError(
            ErrorCode.INSUFFICIENT_SPACE,
            f"{root} has {free} bytes free; this payload needs {needed} (margin included)",
        )
    if target.exists() and target.is_dir() != remote.is_dir:
        await asyncio.to_thread(_remove, target)  # the payload changed shape; start over
    await engine.fetch(TransferRequest(item_id, seedbox, remote.path, target, remote), on_progress)

    on_phase(ItemState.VERIFYING, remote)
    # Seen again while the landed bytes are checked: a link swapped in mid-transfer
    # must not reach the library.
    again = asyncio.ensure_future(session.inspect_payload(remote_path, roots))
    try:
        landed = await _verify(item_id, session, remote, target, torrent, max_repairs, heartbeat)
        await _unsafe_discards(stage, _unchanged(remote, again))
    finally:
        await _settle(again)
    try:
        await asyncio.to_thread(apply_modes, target, modes)
        ensure_inside(root, final_path)
        await asyncio.to_thread(_publish, target, final_path, stage, modes)
    except UnsafePathError as err:
        raise TransferError(ErrorCode.UNSAFE_PATH, str(err)) from err
    except OSError as err:
        raise local_error(err) from err
    return landed


async def _verify(
    item_id: str,
    session: SeedboxSession,
    remote: RemoteEntry,
    target: Path,
    torrent: TorrentLookup | None,
    max_repairs: int,
    heartbeat: Callable[[], None],
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
            info, target, max_repairs, lambda ranges: session.fetch_ranges(
                remote.path, target, ranges, lambda _n: heartbeat()
            ), item_id, heartbeat,
        )  # fmt: skip
        return Landed(size, "pieces", repaired, remote.skipped)
    if info is not None:
        _LOGGER.warning("item %s: the .torrent lists other files; size check only", item_id)
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
            await asyncio.to_thread(_remove, stage)
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


def _publish(target: Path, final_path: Path, stage: Path, modes: Modes) -> None:
    """Atomically put the verified payload at its final path, replacing an older copy.
    Folders made on the way (a rule's subdir) get the landed folders' mode."""
    missing = [p for p in [final_path.parent, *final_path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(modes.dir)
    if final_path.exists() or final_path.is_symlink():
        old = stage / ".replaced"
        _remove(old)
        final_path.rename(old)
    target.rename(final_path)
    _remove(stage)


def discard_staging(root: Path, item_id: str) -> None:
    _remove(staging_dir(root, item_id))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def with_watchdog[T](
    work: Awaitable[T], *, stall_timeout: float, last_activity: Callable[[], float]
) -> T:
    """Run work; if last_activity() (a monotonic time) is older than stall_timeout, stop
    it and raise `stalled`, which is retried like any transient failure."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _pending = await asyncio.wait({task}, timeout=min(5.0, stall_timeout / 4))
            if done:
                return task.result()
            idle = time.monotonic() - last_activity()
            if idle > stall_timeout:
                raise TransferError(ErrorCode.STALLED, f"no progress for {idle:.0f}s")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransferError):
                await task
