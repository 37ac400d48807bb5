"""The engine interface, transfer errors with reason codes, and progress metering."""

from __future__ import annotations

import asyncio
import enum
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config import SeedboxConfig


class ErrorCode(enum.StrEnum):
    """Stable reason codes; Home Assistant shows them and automations match on them."""

    AUTH_FAILED = "auth_failed"
    HOST_KEY_MISMATCH = "host_key_mismatch"
    PERMISSION_DENIED = "permission_denied"
    NO_SPACE = "no_space"
    REMOTE_MISSING = "remote_missing"
    CONNECTION = "connection"
    SIZE_MISMATCH = "size_mismatch"
    TRANSFER = "transfer_failed"
    UNSAFE_PATH = "unsafe_path"
    STALLED = "stalled"
    NOT_CONFIGURED = "not_configured"
    INSUFFICIENT_SPACE = "insufficient_space"
    VERIFY_FAILED = "verify_failed"


# Retrying these cannot help until someone changes configuration or the seedbox.
PERMANENT = frozenset(
    {
        ErrorCode.AUTH_FAILED,
        ErrorCode.HOST_KEY_MISMATCH,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.REMOTE_MISSING,
        ErrorCode.UNSAFE_PATH,
        ErrorCode.VERIFY_FAILED,
    }
)


class TransferError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT


@dataclass(frozen=True, slots=True)
class RemoteFile:
    rel: str  # path relative to the payload root ("" for a single-file payload)
    size: int


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """What the seedbox holds at a payload path: one file, or a tree of files."""

    is_dir: bool
    entries: tuple[RemoteFile, ...]
    dirs: tuple[str, ...] = ()  # every directory below the root, so empty ones are kept
    # The payload's resolved path on the seedbox, checked against the roots: engines
    # fetch from here, so a link swapped into a parent directory later changes nothing.
    path: str = ""
    # Symlinks and special files inside the payload: never followed, never fetched.
    skipped: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.entries)

    @property
    def files(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class TransferRequest:
    item_id: str
    seedbox: SeedboxConfig
    remote_path: str
    target: Path  # where the engine writes: inside the item's staging directory
    remote: RemoteEntry


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


class RateMeter:
    """Smoothed transfer rate and ETA from a stream of byte counts."""

    def __init__(self, total: int | None, alpha: float = 0.3) -> None:
        self.total = total
        self.alpha = alpha
        self.rate = 0.0
        self._last: tuple[float, int] | None = None

    def update(self, done: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._last is not None:
            elapsed = now - self._last[0]
            if elapsed > 0:
                sample = max(0, done - self._last[1]) / elapsed
                self.rate = (
                    sample if self.rate == 0 else self.alpha * sample + (1 - self.alpha) * self.rate
                )
        self._last = (now, done)

    def eta(self, done: int) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - done) / self.rate)


class Bandwidth:
    """One token bucket shared by every transfer; the limit can change at any time.

    Consumers take what they received and, when the bucket is in debt, sleep until it
    is repaid, so the aggregate rate converges on the limit whatever the concurrency."""

    BURST_SECONDS = 0.25

    def __init__(self, rate: int = 0) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()

    async def consume(self, amount: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        burst = self.rate * self.BURST_SECONDS
        self._tokens = min(burst, self._tokens + (now - self._stamp) * self.rate) - amount
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


def local_error(err: OSError) -> TransferError:
    """A local filesystem error as a transfer error with its reason code."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return TransferError(ErrorCode.NO_SPACE, f"no space left at destination: {err}")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TransferError(ErrorCode.PERMISSION_DENIED, f"cannot write destination: {err}")
    return TransferError(ErrorCode.TRANSFER, f"{os.strerror(err.errno or 0)}: {err}")
