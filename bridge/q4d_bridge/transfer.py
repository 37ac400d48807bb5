"""One item's journey from seedbox to library: stat, fetch into staging, verify, publish.

The payload becomes visible at its final path only by an atomic rename after the size
check, so Sonarr/Radarr/Plex never see a partial file. Knows nothing of MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .config import SeedboxConfig
from .engines.base import (
    Engine,
    ErrorCode,
    RemoteEntry,
    TransferError,
    TransferRequest,
    allocated_bytes,
    local_error,
    tree_size,
)
from .models import ItemState
from .remote import SeedboxSession
from .rules import UnsafePathError, ensure_inside

_LOGGER = logging.getLogger(__name__)
STAGING_DIR = ".q4d-partial"


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
) -> int:
    """Returns the verified payload size in bytes."""
    remote = await session.stat_payload(remote_path)
    on_phase(ItemState.TRANSFERRING, remote)
    stage = staging_dir(root, item_id)
    target = stage / final_path.name
    try:
        stage.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise local_error(err) from err
    needed = remote.size - await asyncio.to_thread(allocated_bytes, target) + min_free_space
    free = shutil.disk_usage(stage).free
    if free < needed:
        raise TransferError(
            ErrorCode.INSUFFICIENT_SPACE,
            f"{root} has {free} bytes free; this payload needs {needed} (margin included)",
        )
    if target.exists() and target.is_dir() != remote.is_dir:
        await asyncio.to_thread(_remove, target)  # the payload changed shape; start over
    request = TransferRequest(item_id, seedbox, remote_path, target, remote)
    await engine.fetch(request, on_progress)

    on_phase(ItemState.VERIFYING, remote)
    if not target.exists():
        raise TransferError(ErrorCode.TRANSFER, "engine reported success but wrote nothing")
    size, files = await asyncio.to_thread(tree_size, target)
    if size != remote.size or (remote.is_dir and files != remote.files):
        raise TransferError(
            ErrorCode.SIZE_MISMATCH,
            f"expected {remote.size} bytes in {remote.files} file(s), "
            f"got {size} bytes in {files} file(s)",
        )
    try:
        ensure_inside(root, final_path)
        await asyncio.to_thread(_publish, target, final_path, stage)
    except UnsafePathError as err:
        raise TransferError(ErrorCode.UNSAFE_PATH, str(err)) from err
    except OSError as err:
        raise local_error(err) from err
    return size


def _publish(target: Path, final_path: Path, stage: Path) -> None:
    """Atomically put the verified payload at its final path, replacing an older copy."""
    final_path.parent.mkdir(parents=True, exist_ok=True)
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
