"""Keeps the repair issues (see `issues`) in step with the bridge model.

It listens to the coordinator like any entity and works out, from what is known
now, which issues should exist: a bridge offline (or never seen) for too long, open
circuit breakers, destinations short of space, seedboxes refusing the pinned host
key, seedboxes whose completions the bridge keeps rejecting. Raising or clearing one
happens only when that answer changes.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from homeassistant.core import CALLBACK_TYPE, HassJob, callback
from homeassistant.helpers.event import async_call_later, async_track_point_in_utc_time
from homeassistant.util import dt as dt_util

from . import issues
from .const import (
    HOST_KEY_ERROR,
    OFFLINE_ISSUE_AFTER,
    REJECTIONS_ISSUE_COUNT,
    REJECTIONS_ISSUE_WINDOW,
    SPACE_ERROR_CODES,
)
from .coordinator import Q4dCoordinator
from .models import BridgeState, Item
from .rejection_rate import RejectionRate

# A rejection's message quotes the payload's path: the issue shows its beginning.
MAX_MESSAGE = 255


class Q4dRepairs:
    """Raises and clears one bridge's repair issues."""

    def __init__(self, coordinator: Q4dCoordinator) -> None:
        """Nothing is raised until `async_start`."""
        self.coordinator = coordinator
        self.hass = coordinator.hass
        self.entry_id = coordinator.config_entry.entry_id
        self._offline_timer: CALLBACK_TYPE | None = None
        self._offline_issue = False
        self._space_items: dict[str, str] = {}  # waiting item id -> its destination
        self._host_key_items: dict[str, str] = {}  # failed item id -> its seedbox
        self._host_key_links: set[str] = set()  # seedboxes whose SSH link saw a bad key
        self._breakers_open: set[str] = set()
        self._space_issues: set[str] = set()
        self._host_key_issues: set[str] = set()
        self._rejections = RejectionRate(REJECTIONS_ISSUE_COUNT, REJECTIONS_ISSUE_WINDOW)
        self._last_rejection: dict[str, tuple[str, str]] = {}  # seedbox -> (reason, message)
        self._rejection_issues: set[str] = set()
        self._rejection_timer: CALLBACK_TYPE | None = None
        self._rejection_check: float | None = None  # when the timer fires

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Follow the coordinator; returns the function that stops and clears all."""
        unsubscribe = [
            self.coordinator.async_add_listener(self._async_bridge_changed),
            self.coordinator.async_add_item_change_listener(self._async_item_changed),
            self.coordinator.async_add_event_listener(self._async_event),
        ]
        # Not seen online yet: a bridge that never shows up is reported like an offline one.
        self._async_bridge_changed()

        @callback
        def stop() -> None:
            for unsub in unsubscribe:
                unsub()
            self._async_cancel_offline_timer()
            self._async_cancel_rejection_timer()
            issues.async_delete_all(self.hass, self.entry_id)

        return stop

    @callback
    def _async_bridge_changed(self) -> None:
        status = self.coordinator.status
        if status is not None and status.online:
            self._async_cancel_offline_timer()
            if self._offline_issue:
                self._offline_issue = False
                issues.async_delete_bridge_offline(self.hass, self.entry_id)
        elif self._offline_timer is None and not self._offline_issue:
            self._offline_timer = async_call_later(
                self.hass,
                OFFLINE_ISSUE_AFTER,
                HassJob(self._async_offline_too_long, cancel_on_shutdown=True),
            )
        if (state := self.coordinator.state) is not None:
            self._async_update_breakers(state)
            self._async_update_host_key_links(state)
            self._rejections.keep(state.seedboxes)
        self._async_update_repairs()
        self._async_update_rejections()

    @callback
    def _async_cancel_offline_timer(self) -> None:
        if self._offline_timer is not None:
            self._offline_timer()
            self._offline_timer = None

    @callback
    def _async_offline_too_long(self, _now: datetime) -> None:
        self._offline_timer = None
        self._offline_issue = True
        issues.async_create_bridge_offline(
            self.hass,
            self.entry_id,
            name=self.coordinator.name,
            minutes=round(OFFLINE_ISSUE_AFTER / 60),
        )

    @callback
    def _async_update_breakers(self, state: BridgeState) -> None:
        """A breaker counts as open until its cool-down ends (the coordinator tells
        its listeners then)."""
        now = time.time()
        for seedbox, sb_state in state.seedboxes.items():
            is_open = sb_state.breaker_open_at(now)
            if is_open and seedbox not in self._breakers_open:
                self._breakers_open.add(seedbox)
                issues.async_create_breaker_open(
                    self.hass,
                    self.entry_id,
                    seedbox=seedbox,
                    name=sb_state.name,
                    failures=sb_state.consecutive_failures,
                )
            elif not is_open and seedbox in self._breakers_open:
                self._breakers_open.discard(seedbox)
                issues.async_delete_breaker_open(self.hass, self.entry_id, seedbox)
        for seedbox in sorted(self._breakers_open - set(state.seedboxes)):  # left the bridge
            self._breakers_open.discard(seedbox)
            issues.async_delete_breaker_open(self.hass, self.entry_id, seedbox)

    @callback
    def _async_update_host_key_links(self, state: BridgeState) -> None:
        """Follow the held SSH links: a refused host key counts until a connection works."""
        for seedbox, sb_state in state.seedboxes.items():
            ssh = sb_state.ssh
            if ssh is None or ssh.connected:
                self._host_key_links.discard(seedbox)
            elif ssh.host_key_mismatch:
                self._host_key_links.add(seedbox)
        self._host_key_links.intersection_update(state.seedboxes)

    @callback
    def _async_item_changed(self, item_id: str, item: Item | None) -> None:
        """Track items waiting for space and items refused for a host key mismatch."""
        changed = False
        for table, key in (
            (self._space_items, _space_key(item)),
            (self._host_key_items, _host_key_key(item)),
        ):
            if table.get(item_id) == key:
                continue
            changed = True
            if key is None:
                del table[item_id]
            else:
                table[item_id] = key
        if changed:
            self._async_update_repairs()

    @callback
    def _async_update_repairs(self) -> None:
        """Raise and clear the free-space and host-key issues from what is known now.

        Space: a destination with less free space than the bridge's margin, or a
        waiting item held up for lack of space there. Host key: a seedbox whose held
        SSH link was refused for its host key and has not connected since; for a
        seedbox without a held link (or an older bridge), failed items that report a
        host key mismatch. Failed items stay in the bridge's history for days, so
        they count only where nothing better is known.
        """
        state = self.coordinator.state
        space = set(self._space_items.values())
        host_key: set[str] = set()
        if state is not None:
            space.update(n for n, dest in state.destinations.items() if dest.short_of_space)
            refused = set(self._host_key_items.values())
            for seedbox, sb_state in state.seedboxes.items():
                links = sb_state.ssh is not None
                if seedbox in (self._host_key_links if links else refused):
                    host_key.add(seedbox)
        for destination in sorted(self._space_issues - space):
            issues.async_delete_space(self.hass, self.entry_id, destination)
        for destination in sorted(space - self._space_issues):
            issues.async_create_space(self.hass, self.entry_id, destination=destination)
        for seedbox in sorted(self._host_key_issues - host_key):
            issues.async_delete_host_key(self.hass, self.entry_id, seedbox)
        for seedbox in sorted(host_key - self._host_key_issues):
            issues.async_create_host_key(
                self.hass,
                self.entry_id,
                seedbox=seedbox,
                name=self.coordinator.seedbox_name(seedbox),
            )
        self._space_issues = space
        self._host_key_issues = host_key

    @callback
    def _async_event(self, kind: str, data: dict[str, Any]) -> None:
        """Count the rejections of each seedbox the bridge has; one of its completions
        accepted (queued, not a retry) starts the count over."""
        seedbox = data.get("seedbox")
        state = self.coordinator.state
        if state is None or seedbox not in state.seedboxes:
            return  # not a seedbox of the bridge: it has no device to repair
        if kind == "completion_rejected":
            at = data.get("at")
            self._rejections.rejected(
                seedbox, float(at) if isinstance(at, int | float) else time.time()
            )
            self._last_rejection[seedbox] = (
                data.get("reason") or "",
                data.get("message") or "",
            )
        elif kind == "queued" and not data.get("retry"):
            self._rejections.accepted(seedbox)
        else:
            return
        self._async_update_rejections()

    @callback
    def _async_update_rejections(self, fired: datetime | None = None) -> None:
        """Raise and clear the rejection issues; look again when the next one would
        clear by itself (its rejections fall out of the window)."""
        if fired is not None:
            self._rejection_timer = self._rejection_check = None
        now = time.time()
        too_many = self._rejections.too_many(now)
        for seedbox in sorted(self._rejection_issues - too_many):
            issues.async_delete_rejections(self.hass, self.entry_id, seedbox)
        for seedbox in sorted(too_many - self._rejection_issues):
            reason, message = self._last_rejection.get(seedbox, ("", ""))
            issues.async_create_rejections(
                self.hass,
                self.entry_id,
                seedbox=seedbox,
                name=self.coordinator.seedbox_name(seedbox),
                count=REJECTIONS_ISSUE_COUNT,
                minutes=round(REJECTIONS_ISSUE_WINDOW / 60),
                reason=reason,
                message=message[:MAX_MESSAGE],
            )
        self._rejection_issues = too_many
        change = self._rejections.next_change(now)
        if change == self._rejection_check:
            return  # every state the bridge publishes gets here: the timer stays
        self._async_cancel_rejection_timer()
        if change is not None:
            self._rejection_check = change
            self._rejection_timer = async_track_point_in_utc_time(
                self.hass,
                HassJob(self._async_update_rejections, cancel_on_shutdown=True),
                dt_util.utc_from_timestamp(change),
            )

    @callback
    def _async_cancel_rejection_timer(self) -> None:
        if self._rejection_timer is not None:
            self._rejection_timer()
        self._rejection_timer = self._rejection_check = None


def _space_key(item: Item | None) -> str | None:
    """The destination a waiting item waits on for free space, if it does."""
    if item is None or item.state != "waiting":
        return None
    if item.error_code not in SPACE_ERROR_CODES:
        return None
    return item.destination or "default"


def _host_key_key(item: Item | None) -> str | None:
    """The seedbox whose host key refused a failed item, if it did."""
    if item is None or item.state != "failed" or item.error_code != HOST_KEY_ERROR:
        return None
    return item.seedbox
