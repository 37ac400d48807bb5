"""The torrent clients' retry policy: 1, 2, 4 s for transient failures, then give up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from q4d_bridge.clients.base import ClientError, ClientErrorKind
from q4d_bridge.clients.retry import with_retries


class Flaky:
    """Fails with the given errors, in order, then answers "ok"."""

    def __init__(self, *errors: ClientError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def slept() -> list[float]:
    return []


def sleeper(slept: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return sleep


def down() -> ClientError:
    return ClientError("connection refused", ClientErrorKind.UNREACHABLE)


async def test_transient_failures_are_retried_with_backoff(slept: list[float]) -> None:
    call = Flaky(down(), down(), down())
    assert await with_retries(call, what="stats", sleep=sleeper(slept)) == "ok"
    assert call.calls == 4
    assert slept == [1, 2, 4]


async def test_gives_up_after_four_attempts_with_a_clear_error(slept: list[float]) -> None:
    call = Flaky(down(), down(), down(), down(), down())
    with pytest.raises(ClientError) as err:
        await with_retries(call, what="transmission at 127.0.0.1:9091", sleep=sleeper(slept))
    assert call.calls == 4 and slept == [1, 2, 4]
    assert str(err.value) == (
        "transmission at 127.0.0.1:9091: gave up after 4 attempts: connection refused"
    )
    assert err.value.kind is ClientErrorKind.UNREACHABLE and err.value.transient


@pytest.mark.parametrize(
    "kind", [ClientErrorKind.AUTH, ClientErrorKind.REFUSED, ClientErrorKind.NOT_FOUND]
)
async def test_other_failures_are_raised_at_once(slept: list[float], kind: ClientErrorKind) -> None:
    call = Flaky(ClientError("no", kind))
    with pytest.raises(ClientError) as err:
        await with_retries(call, what="add", sleep=sleeper(slept))
    assert call.calls == 1 and slept == []
    assert err.value.kind is kind and not err.value.transient


async def test_a_plain_function_returning_a_coroutine_is_awaited(slept: list[float]) -> None:
    """tenacity awaits only coroutine functions; the coroutine of a lambda or a plain
    function returning one must be awaited too."""
    call = Flaky(down())

    def start() -> Awaitable[str]:
        return call()

    assert await with_retries(start, what="stats", sleep=sleeper(slept)) == "ok"
    assert call.calls == 2 and slept == [1]
