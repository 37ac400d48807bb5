"""Transient torrent-client failures retried with exponential backoff: 1, 2 and 4 s
between four attempts, then a clear error naming what was tried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential

from .base import ClientError

BACKOFF_SECONDS = (1, 2, 4)


def _transient(err: BaseException) -> bool:
    return isinstance(err, ClientError) and err.transient


async def with_retries[T](
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`call()`, again after 1, 2 and 4 s while it fails with a transient ClientError;
    other errors at once. The last failure is raised as a ClientError of its kind."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(len(BACKOFF_SECONDS) + 1),
        wait=wait_exponential(multiplier=BACKOFF_SECONDS[0], max=BACKOFF_SECONDS[-1]),
        retry=retry_if_exception(_transient),
        sleep=sleep,
    )

    async def attempt() -> T:
        # tenacity awaits only what it sees is a coroutine function: a lambda or a
        # partial returning a coroutine would be called and its coroutine never awaited.
        return await call()

    try:
        return await retrying(attempt)
    except RetryError as err:
        last = err.last_attempt.exception()
        assert isinstance(last, ClientError)
        attempts = len(BACKOFF_SECONDS) + 1
        raise ClientError(f"{what}: gave up after {attempts} attempts: {last}", last.kind) from last
