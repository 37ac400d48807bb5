"""The bandwidth limit shared by every transfer, split fairly between them.

An SFTP read asks for its bytes before it is sent to the seedbox. The asks of every
transfer wait in one queue and are granted at the limit in start-time fair queueing
order (SFQ, Goyal et al. 1996): each transfer is a flow, and flows with asks waiting
get equal bytes, whatever their connections or requests in flight. A flow asking for
less leaves the rest to the others.

lftp and rsync pace themselves: each reserves its share (limit ÷ max_concurrent) while
it runs, and the SFTP flows share what is left, so the total stays within the limit.

`FairShare` is the pure allocator (the caller passes the time); `Bandwidth` runs it on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

# Credit a quiet bucket may save up. With grants only while the bucket is not in
# debt, any window of T seconds gets at most limit x (T + BURST_SECONDS) plus one ask.
BURST_SECONDS = 0.025
# Float slack when the debt is due: a timer that fires a hair early still grants.
_SLACK = 1.0


@dataclass(eq=False, slots=True)
class Flow:
    """One transfer's asks. `finish` is the virtual finish tag of its latest ask."""

    finish: float = 0.0


@dataclass(eq=False, slots=True)
class Ask:
    flow: Flow
    amount: int
    granted: bool = False
    withdrawn: bool = False


class FairShare:
    """Grants asks at `limit` bytes/s (0: at once), fairly between flows.

    A token bucket paces the grants: an ask is granted while the bucket is not in debt,
    and its bytes are taken at once (the bucket may go into debt by one ask), so asks
    of any size pass. Among waiting asks the lowest start tag goes first: an ask starts
    where its flow's previous one finished, or at the virtual time (the start tag last
    granted) if that is later, so a flow that was idle has no credit to catch up with.
    """

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.reserved = 0  # held by lftp and rsync transfers
        self._tokens = 0.0
        self._stamp: float | None = None
        self._virtual = 0.0
        self._order = itertools.count()
        self._queue: list[tuple[float, int, Ask]] = []

    @property
    def rate(self) -> int:
        """What the SFTP flows share, bytes/s."""
        return max(0, self.limit - self.reserved)

    def set_limit(self, limit: int, now: float) -> None:
        self._refill(now)
        # Saved credit was at the old rate, and there was none to save without a limit;
        # a debt between two limits stays.
        self._tokens = min(self._tokens, 0.0) if self.limit and limit else 0.0
        self.limit = limit

    def reserve(self, share: int, now: float) -> None:
        """Take (share > 0) or return (share < 0) a tool engine's share."""
        self._refill(now)
        self.reserved += share

    def ask(self, flow: Flow, amount: int) -> Ask:
        ask = Ask(flow, amount)
        if self.limit <= 0:
            ask.granted = True
            return ask
        start = max(self._virtual, flow.finish)
        flow.finish = start + amount
        heapq.heappush(self._queue, (start, next(self._order), ask))
        return ask

    def withdraw(self, ask: Ask) -> None:
        """An ask nobody waits for any more (its transfer stopped)."""
        ask.withdrawn = True

    def give_back(self, amount: int, now: float) -> None:
        """Bytes granted and never read: the others may use them, up to the burst."""
        if self.limit > 0:
            self._refill(now)
            self._tokens = min(self.rate * BURST_SECONDS, self._tokens + amount)

    def grant(self, now: float) -> list[Ask]:
        """The asks granted now, in order."""
        granted = []
        self._refill(now)
        while self._head() is not None and (self.limit <= 0 or self._tokens > -_SLACK):
            start, _, ask = heapq.heappop(self._queue)
            self._virtual = start
            if self.limit > 0:
                self._tokens -= ask.amount
            ask.granted = True
            granted.append(ask)
        return granted

    def next_grant(self, now: float) -> float | None:
        """When the first waiting ask can be granted; None: nothing waits, or the tool
        engines hold the whole limit (a release is the next chance)."""
        if self._head() is None:
            return None
        self._refill(now)
        if self.limit <= 0 or self._tokens > -_SLACK:
            return now
        rate = self.rate
        return now + -self._tokens / rate if rate > 0 else None

    def _head(self) -> Ask | None:
        while self._queue and self._queue[0][2].withdrawn:
            heapq.heappop(self._queue)
        return self._queue[0][2] if self._queue else None

    def _refill(self, now: float) -> None:
        if self._stamp is not None and now > self._stamp:
            rate = self.rate
            self._tokens = min(rate * BURST_SECONDS, self._tokens + (now - self._stamp) * rate)
        self._stamp = now


class Bandwidth:
    """The shared limit (bytes/s, 0 = none), which can change at any time."""

    def __init__(self, rate: int = 0) -> None:
        self._share = FairShare(rate)
        self._waiting: dict[Ask, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def rate(self) -> int:
        return self._share.limit

    def set_rate(self, rate: int) -> None:
        self._share.set_limit(rate, time.monotonic())
        self._dispatch()

    async def take(self, flow: Flow, amount: int) -> None:
        """Wait until `amount` bytes of the flow's may be asked for from the seedbox."""
        ask = self._share.ask(flow, amount)
        if not ask.granted:
            self._dispatch()
        if ask.granted:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting[ask] = future
        try:
            await future
        except asyncio.CancelledError:
            self._waiting.pop(ask, None)
            if ask.granted:  # granted as the taker was being cancelled
                self.give_back(amount)
            else:
                self._share.withdraw(ask)
            raise

    def give_back(self, amount: int) -> None:
        """Return bytes granted and never read (a read stopped before its data came), so
        the transfers still running get the whole limit."""
        self._share.give_back(amount, time.monotonic())
        self._dispatch()

    @contextlib.contextmanager
    def reserve(self, slots: int) -> Iterator[int]:
        """A tool engine's share of the limit while it runs: limit ÷ slots bytes/s (at
        least 1; 0 when there is no limit), kept from the SFTP flows."""
        rate = self.rate
        share = max(1, rate // max(1, slots)) if rate else 0
        self._share.reserve(share, time.monotonic())
        try:
            yield share
        finally:
            self._share.reserve(-share, time.monotonic())
            self._dispatch()

    def _dispatch(self) -> None:
        now = time.monotonic()
        for ask in self._share.grant(now):
            future = self._waiting.pop(ask, None)
            if future is not None and not future.done():
                future.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._share.next_grant(now)
        if due is not None:
            self._timer = asyncio.get_running_loop().call_later(due - now, self._dispatch)
