"""The engine interface: what a transfer engine is asked to do, and measuring what it
wrote so far."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...config.model import SeedboxConfig
from ..payload import RemoteEntry

Written = Callable[[str, int, bytes], None]


@dataclass(frozen=True, slots=True)
class TransferRequest:
    item_id: str
    seedbox: SeedboxConfig
    remote_path: str
    target: Path  # where the engine writes: inside the item's staging directory
    remote: RemoteEntry
    # Told of every block an engine writes itself (file, offset, bytes), once it is
    # written: piece hashing while the bytes arrive (streaming.py). Engines that run
    # an external tool ignore it; their payload is read back instead.
    on_written: Written | None = None


ProgressCallback = Callable[[int], None]


class Engine(Protocol):
    name: str

    def warm(self, seedbox: SeedboxConfig) -> None:
        """Start whatever set-up a transfer from this seedbox will need (called before
        the payload is even looked at); no-op where there is nothing to prepare."""

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        """Copy the remote payload to request.target, resuming what is already there."""


def allocated_bytes(path: Path) -> int:
    """Bytes actually on disk under path (segmented downloads write sparse files)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    if not path.is_dir():
        return min(st.st_blocks * 512, st.st_size)
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                fst = os.lstat(os.path.join(dirpath, name))  # noqa: PTH118 - os.walk speed
            except FileNotFoundError:
                continue
            total += min(fst.st_blocks * 512, fst.st_size)
    return total


def tree_size(path: Path) -> tuple[int, int]:
    """Apparent size and file count of a local file or directory tree."""
    if not path.is_dir():
        return path.stat().st_size, 1
    size = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            size += os.lstat(os.path.join(dirpath, name)).st_size  # noqa: PTH118
            files += 1
    return size, files
