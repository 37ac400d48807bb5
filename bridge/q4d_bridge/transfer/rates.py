"""Transfer rates: a smoothed rate and ETA per item, and the bandwidth limit shared by
every transfer."""

from __future__ import annotations

import time


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

    Takers book what they are about to receive and, when the bucket is in debt, wait
    until it is repaid, so the aggregate rate converges on the limit whatever the
    concurrency."""

    BURST_SECONDS = 0.25

    def __init__(self, rate: int = 0) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def take(self, amount: int) -> float:
        """Book `amount` bytes; returns how long the taker waits before using them (the
        bucket in debt), so the aggregate rate converges on the limit."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        burst = self.rate * self.BURST_SECONDS
        self._tokens = min(burst, self._tokens + (now - self._stamp) * self.rate) - amount
        self._stamp = now
        return max(0.0, -self._tokens / self.rate)

    def give_back(self, amount: int) -> None:
        """Return bytes booked and never used (a read stopped before its data came), so
        the transfers still running get the whole limit."""
        if self.rate > 0:
            self._tokens = min(self.rate * self.BURST_SECONDS, self._tokens + amount)
