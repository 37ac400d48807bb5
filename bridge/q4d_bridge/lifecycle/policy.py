"""Scheduling policy: which items may start now, what a failure leads to (backoff,
waiting for space, failing for good) and the per-seedbox circuit breaker. Pure."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from ..config.model import TransfersConfig
from ..models import ACTIVE_STATES, Item, ItemState
from ..transfer.errors import ErrorCode, TransferError


@dataclass(frozen=True, slots=True)
class Limits:
    global_max: int
    per_seedbox: Mapping[str, int]


def is_runnable(item: Item, now: float) -> bool:
    if item.paused:
        return False
    if item.state is ItemState.QUEUED:
        return True
    return item.state is ItemState.WAITING and (item.next_attempt_at or 0) <= now


def pick_runnable(
    items: Iterable[Item],
    limits: Limits,
    *,
    paused: bool,
    now: float,
    blocked: Collection[str] = (),
) -> list[Item]:
    """Items to start now: highest priority first, then oldest, within every limit;
    none from `blocked` seedboxes (circuit breaker open)."""
    pool = list(items)
    active = Counter(i.seedbox for i in pool if i.state in ACTIVE_STATES)
    free = limits.global_max - sum(active.values())
    if paused or free <= 0:
        return []
    candidates = sorted(
        (i for i in pool if is_runnable(i, now)), key=lambda i: (-i.priority, i.received_at)
    )
    chosen: list[Item] = []
    for item in candidates:
        if len(chosen) >= free:
            break
        if item.seedbox in blocked:
            continue
        if active[item.seedbox] >= limits.per_seedbox.get(item.seedbox, limits.global_max):
            continue
        active[item.seedbox] += 1
        chosen.append(item)
    return chosen


def next_wakeup(items: Iterable[Item]) -> float | None:
    """When the earliest waiting item becomes due."""
    due = [
        i.next_attempt_at
        for i in items
        if i.state is ItemState.WAITING and not i.paused and i.next_attempt_at is not None
    ]
    return min(due) if due else None


def retry_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff (initial, 2x, 4x … capped) with jitter in [50 %, 100 %]."""
    base = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    return base * (0.5 + rng.random() * 0.5)


# Failures that say nothing about the seedbox's health: they do not trip its breaker.
SEEDBOX_NEUTRAL = frozenset(
    {
        ErrorCode.REMOTE_MISSING,
        ErrorCode.UNSAFE_PATH,
        ErrorCode.NO_SPACE,
        ErrorCode.INSUFFICIENT_SPACE,
        ErrorCode.VERIFY_FAILED,
        ErrorCode.NOTHING_TO_FETCH,
        ErrorCode.OWNERSHIP,
    }
)


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """What a failed attempt leads to."""

    retry_at: float | None  # None: the item failed for good
    attempt_spent: bool
    counts_for_breaker: bool


def after_failure(
    item: Item, err: TransferError, transfers: TransfersConfig, now: float, rng: random.Random
) -> AfterFailure:
    """Lacking space costs no attempt and waits `space_recheck`; a permanent error, or
    the last allowed attempt, fails the item; anything else retries with backoff."""
    if err.code is ErrorCode.INSUFFICIENT_SPACE:
        return AfterFailure(now + transfers.space_recheck, False, False)
    counts = err.code not in SEEDBOX_NEUTRAL
    if err.permanent or item.attempts >= transfers.max_attempts:
        return AfterFailure(None, True, counts)
    delay = retry_delay(item.attempts, transfers.retry_initial, transfers.retry_max, rng)
    return AfterFailure(now + delay, True, counts)


@dataclass(slots=True)
class Breaker:
    """Per-seedbox circuit breaker: after `threshold` consecutive failures the seedbox's
    queue rests for `cooldown`; then one more failure re-opens it (half-open)."""

    threshold: int
    cooldown: float
    failures: int = 0
    open_until: float | None = None

    def failure(self, now: float) -> bool:
        """Count a failure; True when this one opened the breaker."""
        self.failures += 1
        if self.failures >= self.threshold and self.open_until is None:
            self.open_until = now + self.cooldown
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.open_until = None

    def is_open(self, now: float) -> bool:
        if self.open_until is None:
            return False
        if now < self.open_until:
            return True
        self.open_until = None  # cool-down over: half-open, next failure re-opens
        self.failures = self.threshold - 1
        return False
