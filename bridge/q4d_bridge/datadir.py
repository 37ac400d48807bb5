"""One bridge per data directory: an exclusive lock held while it runs.

Two bridges on one store would take the same MQTT session from each other, start the
same transfers twice and write the same staging files. The lock is an flock on
`<data_dir>/.lock`, so the kernel releases it when the process ends, even by kill -9.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class DataDirBusy(Exception):
    """Another process holds the data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirBusy(
                f"{self.path.parent} is in use by another q4d-bridge (pid {holder}); "
                "one bridge per data_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None
