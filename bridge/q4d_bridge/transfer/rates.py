"""An item's transfer rate and time left, smoothed so that neither jumps."""

from __future__ import annotations

import math
import time


class RateMeter:
    """Rate and ETA from a stream of byte counts.

    The rate is bytes over seconds, both summed with weights that decay with age
    (e^(-age/TAU)): an exponentially weighted average over ~TAU seconds in which each
    report weighs by the time it covers, so irregular reports do not skew it and the
    first ones are not pulled towards 0. The clock starts at the first report that shows
    bytes moving (the time before it holds SSH set-up): no slow start. The ETA is the
    bytes left at that rate."""

    TAU = 5.0

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.rate = 0.0
        self._bytes = 0.0
        self._seconds = 0.0
        self._moving = False
        self._last: tuple[float, int] | None = None

    def update(self, done: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._last is not None:
            elapsed = now - self._last[0]
            if elapsed <= 0:
                return
            moved = max(0, done - self._last[1])
            if self._moving:
                decay = math.exp(-elapsed / self.TAU)
                self._bytes = self._bytes * decay + moved
                self._seconds = self._seconds * decay + elapsed
                self.rate = self._bytes / self._seconds
            self._moving = self._moving or moved > 0
        self._last = (now, done)

    def eta(self, done: int) -> float | None:
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - done) / self.rate)
