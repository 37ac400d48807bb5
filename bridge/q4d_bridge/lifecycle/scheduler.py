"""The scheduler: starts what the policy allows (limits, priorities, the queue-wide pause,
per-seedbox circuit breakers, items whose retry is due) and sleeps until something
changes or comes due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from ..models import Item, ItemState
from ..persistence.store import Store
from .machine import QUEUED_OR_WAITING, Announcer, Lifecycle
from .policy import Breaker, Limits, next_wakeup, pick_runnable

_LOGGER = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        lifecycle: Lifecycle,
        store: Store,
        notifier: Announcer,
        *,
        limits: Limits,
        breakers: Mapping[str, Breaker],
    ) -> None:
        self.lifecycle = lifecycle
        self.store = store
        self.notifier = notifier
        self.limits = limits
        self.breakers = breakers
        self.paused: bool = bool(store.get_setting("paused", False))
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    def set_paused(self, paused: bool) -> None:
        """The queue-wide pause, kept across restarts. The items it holds (or releases)
        are published again: their payloads say whether the queue holds them."""
        changed = paused != self.paused
        self.paused = paused
        self.store.set_setting("paused", paused)
        if changed:
            for item in self.lifecycle.unfinished.values():
                if item.state in QUEUED_OR_WAITING and not item.paused:
                    self.notifier.item(item)
        self.notifier.state_changed()
        self.wake()

    def set_max_concurrent(self, count: int) -> None:
        self.limits = Limits(count, self.limits.per_seedbox)
        self.store.set_setting("max_concurrent", count)
        self.wake()

    def succeeded(self, seedbox: str) -> None:
        breaker = self.breakers.get(seedbox)
        if breaker is not None:
            breaker.success()

    def failed(self, seedbox: str, now: float) -> None:
        """A failure that says something about the seedbox: count it, and announce the
        breaker opening (its event in the outbox before the attempt's own)."""
        breaker = self.breakers.get(seedbox)
        if breaker is None or not breaker.failure(now):
            return
        _LOGGER.error(
            "seedbox %s: %d consecutive failures; pausing its queue for %.0fs",
            seedbox, breaker.failures, breaker.cooldown,
        )  # fmt: skip
        notice = self.notifier.event_message(
            "breaker_open", seedbox=seedbox, failures=breaker.failures, until=breaker.open_until
        )
        self.store.enqueue([notice])
        self.notifier.outbox_pending()
        self.notifier.state_changed()

    async def run(self, launch: Callable[[Item], None]) -> None:
        """Start what may start (`launch` runs an attempt), forever."""
        items = self.lifecycle.unfinished
        while True:
            self._wakeup.clear()
            now = time.time()
            blocked = {sb for sb, breaker in self.breakers.items() if breaker.is_open(now)}
            for item in pick_runnable(
                items.values(), self.limits, paused=self.paused, now=now, blocked=blocked
            ):
                self.lifecycle.start(item, now)
                launch(item)
            reopen = [b.open_until for b in self.breakers.values() if b.open_until is not None]
            waiting = next_wakeup(i for i in items.values() if i.state is ItemState.WAITING)
            due = min([*reopen, *([waiting] if waiting is not None else [])], default=None)
            timeout = None if due is None else max(0.0, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
