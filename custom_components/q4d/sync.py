"""When the bridge's retained items are all in, and which known items did not come.

The first sync starts with the first state snapshot. A re-sync starts when Home
Assistant reconnects to the broker (the retained items are delivered again) and when
the bridge comes back online (it re-publishes them): items removed meanwhile are
simply not among them, so every known item counts as unseen until its topic delivers
again. The model is synced once a state snapshot taken since the sync began counts
no more items than have been seen, or after a grace period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

from .const import SYNC_GRACE


class RetainedItemsSync:
    """Tracks one sync at a time; `on_synced` gets the items that did not come."""

    def __init__(self, hass: HomeAssistant, on_synced: Callable[[set[str]], None]) -> None:
        """Not synced until the first sync completes."""
        self.hass = hass
        self.synced = False
        self._on_synced = on_synced
        self._unseen: set[str] = set()
        # A state snapshot arrived since the sync started: its counts are current.
        self._fresh = False
        self._timer: CALLBACK_TYPE | None = None

    @callback
    def async_start(self, known: Iterable[str]) -> None:
        """Start waiting; the `known` items count as gone unless published again."""
        self.synced = False
        self._unseen = set(known)
        self._fresh = False
        self.async_cancel()
        self._timer = async_call_later(
            self.hass, SYNC_GRACE, HassJob(self._async_timeout, cancel_on_shutdown=True)
        )

    @callback
    def async_cancel(self) -> None:
        """Stop waiting (nothing arrives while disconnected; the entry unloads)."""
        if self._timer is not None:
            self._timer()
            self._timer = None

    @callback
    def async_seen(self, item_id: str) -> None:
        """The item's topic delivered (an item, or its removal)."""
        self._unseen.discard(item_id)

    @callback
    def async_state(self, items: int, total: int) -> None:
        """A state snapshot counts `total` items; the model has `items`."""
        self._fresh = True
        self.async_check(items, total)

    @callback
    def async_check(self, items: int, total: int) -> None:
        """Synced early once the current counts are met by the items seen."""
        if not self.synced and self._fresh and items - len(self._unseen) >= total:
            self._async_synced()

    @callback
    def _async_timeout(self, _now: datetime) -> None:
        self._timer = None
        if not self.synced:
            self._async_synced()

    @callback
    def _async_synced(self) -> None:
        self.synced = True
        self.async_cancel()
        unseen, self._unseen = self._unseen, set()
        self._on_synced(unseen)
