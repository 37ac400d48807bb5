"""How often the bridge refuses a seedbox's completions, for the repair issue raised when
it keeps doing so (`REJECTIONS_ISSUE_COUNT` within `REJECTIONS_ISSUE_WINDOW`). Pure."""

from __future__ import annotations

import bisect
from collections.abc import Collection


class RejectionRate:
    """The latest rejections of each seedbox, until one of its completions is accepted."""

    def __init__(self, count: int, window: float) -> None:
        """`count` rejections within `window` seconds are too many."""
        self.count = count
        self.window = window
        self._times: dict[str, list[float]] = {}  # the newest `count`, oldest first

    def rejected(self, seedbox: str, at: float) -> None:
        """A rejection, at the bridge's time (a late delivery counts when it happened)."""
        times = self._times.setdefault(seedbox, [])
        bisect.insort(times, at)
        del times[: -self.count]

    def accepted(self, seedbox: str) -> None:
        """A completion of the seedbox was accepted: whatever was wrong is fixed."""
        self._times.pop(seedbox, None)

    def keep(self, seedboxes: Collection[str]) -> None:
        """Forget the seedboxes the bridge no longer has."""
        for seedbox in [sb for sb in self._times if sb not in seedboxes]:
            del self._times[seedbox]

    def too_many(self, now: float) -> set[str]:
        """The seedboxes with `count` rejections or more in the window ending at `now`."""
        return {
            seedbox
            for seedbox, times in self._times.items()
            if len(times) == self.count and times[0] > now - self.window
        }

    def next_change(self, now: float) -> float | None:
        """When the first seedbox over the limit falls below it (unless more come)."""
        ends = [self._times[seedbox][0] + self.window for seedbox in self.too_many(now)]
        return min(ends, default=None)
