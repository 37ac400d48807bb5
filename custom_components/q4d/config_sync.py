"""Keeps a bridge entry's subentries (seedboxes, destinations, rules, *arr instances,
home torrent clients) in step with the bridge's configuration, and tells the bridge
when one is removed in Home Assistant. The configuration's `dispatch` section is not
a subentry: the options flow edits it from `config`.

The bridge owns the configuration and publishes it, redacted, on the retained
`<prefix>/bridge/<id>/config` topic. Every entry there has a subentry here: entries
from the bridge's YAML file are read-only, runtime entries made elsewhere (another
Home Assistant, the CLI) are added, subentries the bridge no longer has go away.

Home Assistant has no hook before a subentry is removed (2025.4 and 2026.10 alike):
removal shows as an update of the config entry. The update listener compares the
subentries with those it knew and sends `config_remove` for each one gone. When the
bridge refuses (a YAML entry, a destination still named by a rule, a seedbox with
unfinished transfers) or does not answer, the subentry is put back and a persistent
notification says why. A seedbox refused with `confirm_required` is removed for good
if the user removes it again within `CONFIRM_WINDOW`: that second removal confirms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from homeassistant.components import mqtt, persistent_notification
from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import translation

from .bridge_client import BridgeRefusal
from .config_values import (
    SECTIONS,
    BridgeConfig,
    BridgeEntry,
    parse_config,
    subentry_data,
    subentry_title,
    unique_id,
)
from .const import DOMAIN, LOGGER
from .coordinator import Q4dCoordinator
from .models import PayloadError

# `config_set`/`config_remove` apply the change live (sessions, routing) before answering.
APPLY_TIMEOUT: Final = 30.0
# A seedbox refused for its unfinished transfers is removed if removed again this soon.
CONFIRM_WINDOW: Final = 600.0
MAX_NAMES: Final = 20
# The bridge's refusals of `config_remove`, by the notification text that explains them.
REFUSAL_TEXTS: Final = {
    "read_only": "config_read_only",
    "read_only_yaml": "config_read_only",
    "confirm_required": "config_confirm_required",
    "in_use": "config_in_use",
    "cannot_connect": "config_unavailable",
}


@dataclass(slots=True)
class _Refusal:
    code: str
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class ConfigSync:
    """Mirrors one bridge's configuration as subentries of its config entry."""

    def __init__(self, coordinator: Q4dCoordinator) -> None:
        """Nothing is subscribed until `async_start`."""
        self.coordinator = coordinator
        self.hass: HomeAssistant = coordinator.hass
        self.entry: ConfigEntry[Any] = coordinator.config_entry
        self.config: BridgeConfig | None = None
        # Unique ids a flow or a removal is working on: the sync leaves them alone.
        self._held: set[str] = set()
        # A configuration older than a change the bridge confirmed is not applied.
        self._min_revision = 0
        self._known: dict[str, ConfigSubentry] = dict(self.entry.subentries)
        self._confirm_until: dict[str, float] = {}
        self._online = False
        self._stopped = False

    async def async_start(self) -> CALLBACK_TYPE:
        """Follow the `config` topic and the entry's subentries; returns the stop."""
        unsubscribe = [
            await mqtt.async_subscribe(
                self.hass, f"{self.coordinator.base_topic}/config", self._handle_config, qos=1
            ),
            self.entry.add_update_listener(self._async_entry_updated),
            self.coordinator.async_add_listener(self._async_bridge_changed),
        ]

        @callback
        def stop() -> None:
            self._stopped = True
            for unsub in unsubscribe:
                unsub()

        return stop

    # --- what the flows ask --------------------------------------------------------------

    def entry_of(self, subentry_type: str, entry_id: str) -> BridgeEntry | None:
        """The bridge's entry behind a subentry, as last published (the flows start
        only once the bridge has published its configuration)."""
        assert self.config is not None
        return self.config.entry(SECTIONS[subentry_type], entry_id)

    def ids(self, subentry_type: str) -> set[str]:
        """Ids the bridge has in that section, and those of the subentries here."""
        ids = (
            {e.id for e in self.config.sections[SECTIONS[subentry_type]]} if self.config else set()
        )
        return ids | {
            str(sub.data.get("id"))
            for sub in self.entry.subentries.values()
            if sub.subentry_type == subentry_type
        }

    def rule_orders(self) -> list[int]:
        """The `order` of every runtime rule."""
        entries = self.config.sections["rules"] if self.config else []
        return [e.value["order"] for e in entries if type(e.value.get("order")) is int]

    @callback
    def async_hold(self, key: str) -> None:
        """A flow is about to change this entry: the sync leaves it to the flow."""
        self._held.add(key)

    @callback
    def async_release(self, key: str) -> None:
        """The flow is done: the bridge's view of the entry applies again."""
        self._held.discard(key)
        self._async_apply()

    @callback
    def async_changed(self, revision: Any) -> None:
        """The bridge confirmed a change as `revision`: older configurations are stale."""
        if type(revision) is int:
            self._min_revision = max(self._min_revision, revision)

    # --- the bridge's configuration -----------------------------------------------------

    @callback
    def _handle_config(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return  # a cleared topic: the bridge no longer publishes one
        try:
            config = parse_config(msg.payload)
        except PayloadError as err:
            LOGGER.warning("Ignoring invalid configuration from bridge %s: %s", self._name, err)
            return
        self.config = config
        self._async_apply()

    @callback
    def _async_bridge_changed(self) -> None:
        online = self.coordinator.online
        if online and not self._online:
            # A restarted bridge may count revisions anew (a new data directory).
            self._min_revision = 0
            self._async_apply()
        self._online = online

    @callback
    def _async_apply(self) -> None:
        """Add, update and remove subentries to match the bridge's configuration."""
        if self._stopped:
            return  # a flow that ends after the entry unloaded
        self._async_detect_removals()
        config = self.config
        if config is None or config.revision < self._min_revision:
            return
        wanted: dict[str, tuple[str, BridgeEntry]] = {
            unique_id(kind, e.id): (kind, e)
            for kind, section in SECTIONS.items()
            for e in config.sections[section]
        }
        mine = {
            sub.unique_id: sub
            for sub in self.entry.subentries.values()
            if sub.subentry_type in SECTIONS and sub.unique_id is not None
        }
        entries = self.hass.config_entries
        for key, sub in mine.items():
            if key not in wanted and key not in self._held:
                self._known.pop(sub.subentry_id, None)  # not a removal to tell the bridge
                entries.async_remove_subentry(self.entry, sub.subentry_id)
        for key, (kind, bridge_entry) in wanted.items():
            if key in self._held:
                continue
            data = subentry_data(kind, bridge_entry)
            title = subentry_title(kind, bridge_entry)
            if (existing := mine.get(key)) is None:
                new = ConfigSubentry(
                    data=MappingProxyType(data), subentry_type=kind, title=title, unique_id=key
                )
                entries.async_add_subentry(self.entry, new)
            elif existing.data != data or existing.title != title:
                entries.async_update_subentry(self.entry, existing, data=data, title=title)

    # --- subentries removed in Home Assistant ---------------------------------------------

    async def _async_entry_updated(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        self._async_detect_removals()

    @callback
    def _async_detect_removals(self) -> None:
        current = self.entry.subentries
        removed = [sub for key, sub in self._known.items() if key not in current]
        self._known = dict(current)
        for sub in removed:  # all made by the sync or the flows: typed, with a unique id
            self._held.add(str(sub.unique_id))
            self.entry.async_create_background_task(
                self.hass, self._async_removed(sub), f"q4d remove {sub.unique_id}"
            )

    async def _async_removed(self, sub: ConfigSubentry) -> None:
        """Tell the bridge; put the subentry back if it refuses."""
        key = str(sub.unique_id)
        refusal = await self._async_remove_on_bridge(sub)
        self._held.discard(key)
        if self._stopped:
            return
        notification_id = f"{DOMAIN}_{self.entry.entry_id}_{key}"
        if refusal is None:
            persistent_notification.async_dismiss(self.hass, notification_id)
            self._async_apply()
            return
        if refusal.code == "confirm_required":
            self._confirm_until[key] = time.monotonic() + CONFIRM_WINDOW
        self._async_apply()  # the bridge still has it: the sync puts it back
        if not any(s.unique_id == key for s in self.entry.subentries.values()):
            restored = ConfigSubentry(
                data=sub.data, subentry_type=sub.subentry_type, title=sub.title, unique_id=key
            )
            self.hass.config_entries.async_add_subentry(self.entry, restored)
        await self._async_notify(sub, refusal, notification_id)

    async def _async_remove_on_bridge(self, sub: ConfigSubentry) -> _Refusal | None:
        if sub.data.get("read_only"):
            return _Refusal("read_only_yaml")
        key = str(sub.unique_id)
        confirm = self._confirm_until.pop(key, 0.0) > time.monotonic()
        args = {
            "section": SECTIONS[sub.subentry_type],
            "id": sub.data.get("id"),
            "confirm": confirm,
        }
        try:
            result = await self.coordinator.async_command(
                "config_remove", args, time_limit=APPLY_TIMEOUT
            )
        except BridgeRefusal as err:
            if err.code == "apply_failed":  # removed, and so when the bridge restarts
                self.async_changed(err.details.get("revision"))
                return None
            if err.code == "not_found":
                return None  # gone from the bridge already
            message = (err.translation_placeholders or {}).get("message", "")
            return _Refusal(err.code, message, err.details)
        except HomeAssistantError as err:
            return _Refusal("cannot_connect", str(err))
        self.async_changed(result.get("revision") if isinstance(result, dict) else None)
        return None

    async def _async_notify(
        self, sub: ConfigSubentry, refusal: _Refusal, notification_id: str
    ) -> None:
        head = f"component.{DOMAIN}.common."
        strings = await translation.async_get_translations(
            self.hass, self.hass.config.language, "common", {DOMAIN}
        )
        text = strings[head + REFUSAL_TEXTS.get(refusal.code, "config_refused")].format(
            title=sub.title,
            code=refusal.code,
            message=refusal.message,
            items=self._item_names(refusal.details.get("items")),
            minutes=int(CONFIRM_WINDOW // 60),
        )
        title = strings[head + "config_kept_title"].format(title=sub.title, bridge=self._name)
        persistent_notification.async_create(
            self.hass, text, title=title, notification_id=notification_id
        )

    def _item_names(self, ids: Any) -> str:
        ids = [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
        names = [item.name if (item := self.coordinator.items.get(i)) else i for i in ids]
        more = f" (+{len(names) - MAX_NAMES})" if len(names) > MAX_NAMES else ""
        return ", ".join(names[:MAX_NAMES]) + more

    @property
    def _name(self) -> str:
        return self.coordinator.name
