"""The stall watchdog: an attempt that shows no sign of life for too long is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from .errors import ErrorCode, TransferError


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
