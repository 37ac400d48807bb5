"""A new configuration applied to the running bridge (Bridge.apply), without a restart.

- Routing (rules, destinations, plans, type codes, default destination) is adopted in
  place: the next completion resolves with it. Items already queued keep the destination
  they were given, unless it is gone (removed, or at another path: their local path would
  leave it); then they become `unconfigured`, as at start-up.
- A seedbox added gets its parts (seedbox_parts.py), its client polled, its SSH link held;
  its completions are accepted at once.
- A seedbox changed gets new parts; new attempts use them. A running attempt keeps the
  session, client and SFTP connections it started with; those close when the last
  attempt that started before the change has ended.
- A seedbox removed, or a destination gone, with unfinished items is refused
  (ConfirmRequired) unless confirmed; confirmed, its running attempts stop and its
  unfinished items become `unconfigured` (a payload being verified finishes first: it
  is being moved into the library), and its parts close once those attempts ended.
- The Sonarr/Radarr instances (`arr`) and the home torrent clients (`home_clients`)
  are replaced in place: the arr_import and handoff steps look their instance up at
  each run, so the next one uses the new settings (one running keeps the settings it
  started with).
- The dispatch settings are handed to the dispatcher and the request tracker: the
  next decision (and the next look at the requests) uses them.
- Every other section is read once at start: a change to it is listed in
  `restart_required`, not pretended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config.model import Config, SeedboxConfig
from .lifecycle.runner import UNCONFIGURED
from .models import Item, ItemState
from .mqtt.commands import CommandError
from .mqtt.config_commands import ConfigCommandError
from .seedbox_parts import SeedboxParts
from .transfer.remote import SeedboxSession

if TYPE_CHECKING:
    from .bridge import Bridge

_LOGGER = logging.getLogger(__name__)
LIVE_SECTIONS = frozenset({"seedboxes", "routing", "arr", "home_clients", "dispatch"})
# Config fields as the YAML names their sections.
SECTION_OF = {"bridge_id": "bridge", "bridge_name": "bridge"}


class ConfirmRequired(CommandError):
    """Applying would leave unfinished items without their seedbox or destination."""

    def __init__(self, items: list[str]) -> None:
        shown = ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")
        super().__init__(
            "confirm_required",
            f"{len(items)} unfinished item(s) would lose their seedbox or destination "
            f"({shown}); confirm to apply anyway: they fail as not configured",
        )
        self.items = items


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs between the running configuration and a new one."""

    routing: bool
    arr: bool
    home_clients: bool
    dispatch: bool
    added: tuple[SeedboxConfig, ...]
    changed: tuple[SeedboxConfig, ...]
    removed: tuple[str, ...]
    gone_destinations: frozenset[str]  # removed, or now at another path
    restart_required: tuple[str, ...]

    def strands(self, item: Item) -> bool:
        return item.seedbox in self.removed or item.destination in self.gone_destinations


def changes(old: Config, new: Config) -> Changes:
    added = tuple(sb for sb_id, sb in new.seedboxes.items() if sb_id not in old.seedboxes)
    changed = tuple(
        sb
        for sb_id, sb in new.seedboxes.items()
        if sb_id in old.seedboxes and old.seedboxes[sb_id] != sb
    )
    destinations = new.routing.destinations
    restart = {
        SECTION_OF.get(f.name, f.name)
        for f in dataclasses.fields(Config)
        if f.name not in LIVE_SECTIONS and _section(old, f.name) != _section(new, f.name)
    }
    return Changes(
        routing=old.routing != new.routing,
        arr=old.arr != new.arr,
        home_clients=old.home_clients != new.home_clients,
        dispatch=old.dispatch != new.dispatch,
        added=added,
        changed=changed,
        removed=tuple(sb_id for sb_id in old.seedboxes if sb_id not in new.seedboxes),
        gone_destinations=frozenset(
            name
            for name, path in old.routing.destinations.items()
            if destinations.get(name) != path
        ),
        restart_required=tuple(sorted(restart)),
    )


def _section(config: Config, name: str) -> object:
    """A section as it matters to the running bridge: classic mode switched off is off,
    whichever seedbox it would use (by default the first, which a change may remove)."""
    if name == "classic" and not config.classic.enabled:
        return None
    return getattr(config, name)


def link_job(bridge: Bridge, session: SeedboxSession) -> Coroutine[Any, Any, None] | None:
    """The seedbox's held SSH link, when its hook's outbox or a broker forward needs one."""
    seedbox = session.seedbox
    if not (seedbox.hook_flush or seedbox.broker_forward_port):
        return None
    broker = (bridge.config.broker.host, bridge.config.broker.port)
    return session.keep_connected(broker, bridge.connected)


def client_jobs(bridge: Bridge) -> dict[str, Coroutine[Any, Any, None]]:
    """The loops the torrent clients need: polling and reconciliation, the add requests
    followed, and the seedbox clean-up (torrents whose seeding goal is reached)."""

    async def follow_requests() -> None:
        await bridge.dispatcher.recover()
        await bridge.tracker.run()

    return {
        "clients": bridge.monitor.run(bridge.reconciler.reconcile),
        "requests": follow_requests(),
        "cleanup": bridge.cleanup.run(),
    }


class LiveConfig:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._retiring: set[asyncio.Task[None]] = set()

    def vet(self, new: Config, *, confirm: bool) -> None:
        """Refuse what apply would refuse, before the configuration commands store the
        change (their answers carry the items)."""
        try:
            self._stranded(new, changes(self.bridge.config, new), confirm=confirm)
        except ConfirmRequired as err:
            raise ConfigCommandError(err.code, err.message, items=err.items) from None
        except CommandError as err:
            raise ConfigCommandError(err.code, err.message) from None

    def _stranded(self, new: Config, found: Changes, *, confirm: bool) -> list[Item]:
        bridge = self.bridge
        if bridge.stopping:  # what it would start could no longer be stopped
            raise CommandError("unavailable", "the bridge is stopping")
        self._check_tracker_rules(new)
        stranded = [i for i in bridge.lifecycle.unfinished.values() if found.strands(i)]
        if stranded and not confirm:
            raise ConfirmRequired([i.id for i in stranded])
        return stranded

    async def apply(self, new: Config, *, confirm: bool) -> dict[str, Any]:
        bridge = self.bridge
        found = changes(bridge.config, new)
        stranded = self._stranded(new, found, confirm=confirm)
        # From here on nothing awaits: no completion, command or attempt runs until the
        # whole change is in, so none sees half of it.
        if found.routing:
            bridge.config.routing.adopt(new.routing)
        if found.arr:
            bridge.arr.clear()
            bridge.arr.update(new.arr)
        if found.home_clients:
            bridge.home_clients.clear()
            bridge.home_clients.update(new.home_clients)
        if found.dispatch:
            bridge.adopt_dispatch(new.dispatch)
        for item in stranded:
            self._unconfigure(item)
        for sb_id in found.removed:
            bridge.monitor.untrack(sb_id)
            job = bridge.end_job(f"ssh-{sb_id}")
            self._retire(bridge.seedboxes.drop(sb_id), job)
        for seedbox in found.added:
            bridge.seedboxes.put(seedbox)
            self._started(seedbox)
        for seedbox in found.changed:
            job = bridge.end_job(f"ssh-{seedbox.id}")
            replaced = bridge.seedboxes.put(seedbox)
            bridge.monitor.untrack(seedbox.id)
            self._started(seedbox)
            if replaced is not None:  # always: it was there
                self._retire(replaced, job)
        if found.added or found.removed:
            bridge.publisher.seedboxes_changed()
        bridge.housekeeping.space_used()  # a new destination's free space, for the state
        bridge.scheduler.wake()
        bridge.publisher.state_changed()
        swapped = [name for name, changed in (("arr", found.arr),
                    ("home_clients", found.home_clients), ("dispatch", found.dispatch))
                    if changed]  # fmt: skip
        _LOGGER.info(
            "configuration applied: routing %s; %s replaced; seedboxes added %s, changed %s, "
            "removed %s%s",
            "changed" if found.routing else "unchanged", _names(swapped),
            _names(sb.id for sb in found.added), _names(sb.id for sb in found.changed),
            _names(found.removed),
            f"; a restart applies {', '.join(found.restart_required)}"
            if found.restart_required else "",
        )  # fmt: skip
        return {
            "routing": found.routing,
            "arr": found.arr,
            "home_clients": found.home_clients,
            "dispatch": found.dispatch,
            "seedboxes": {
                "added": [sb.id for sb in found.added],
                "changed": [sb.id for sb in found.changed],
                "removed": list(found.removed),
            },
            "unconfigured": [i.id for i in stranded],
            "restart_required": list(found.restart_required),
        }

    async def close(self) -> None:
        """Bridge shutdown, once the attempts stopped: the replaced parts close."""
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def _check_tracker_rules(self, new: Config) -> None:
        """A tracker rule (stored, not configuration) must keep its destination."""
        for rule in self.bridge.config.routing.tracker_rules.rules:
            if rule.destination is not None and rule.destination not in new.routing.destinations:
                raise CommandError(
                    "in_use",
                    f"destination {rule.destination} is used by the tracker rule for "
                    f"{rule.tracker}; change or remove that rule first",
                )

    def _unconfigure(self, item: Item) -> None:
        """As at start-up: failed `not_configured`. A running attempt stops first (it
        records that as it ends); a payload being verified finishes."""
        bridge = self.bridge
        if item.state is ItemState.VERIFYING:
            return  # if it does not land, its next attempt finds it unconfigured
        if item.state is ItemState.PROCESSING:
            bridge.post.cancel(item.id)
        elif bridge.runner.interrupt(item.id, UNCONFIGURED):
            return
        bridge.lifecycle.unconfigured(item)

    def _started(self, seedbox: SeedboxConfig) -> None:
        """A seedbox's new parts in motion: its client polled, its SSH link held."""
        bridge = self.bridge
        if seedbox.id in bridge.clients:
            bridge.monitor.track(seedbox.id)
            if not bridge.has_job("clients"):  # the first client: its loops start
                for name, job in client_jobs(bridge).items():
                    bridge.start_job(name, job)
        link = link_job(bridge, bridge.sessions[seedbox.id])
        if link is not None:
            bridge.start_job(f"ssh-{seedbox.id}", link)

    def _retire(self, parts: SeedboxParts, job: asyncio.Task[None] | None) -> None:
        """Close a seedbox's former parts once the attempts that use them ended."""
        bridge = self.bridge
        attempts = [
            task
            for item_id, task in bridge.runner.running.items()
            if bridge.lifecycle.items[item_id].seedbox == parts.config.id
        ]
        waits = [*attempts, *([job] if job is not None else [])]
        task = asyncio.create_task(self._close(parts, waits), name=f"retire-{parts.config.id}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close(self, parts: SeedboxParts, waits: list[asyncio.Task[None]]) -> None:
        if waits:
            await asyncio.wait(waits)  # never cancels them, even if this is cancelled
        try:
            await parts.close()
            if self.bridge.config.seedboxes.get(parts.config.id) != parts.config:
                await self.bridge.sftp.forget(parts.config)
        except Exception:  # closing what is no longer used must not stop the bridge
            _LOGGER.exception("seedbox %s: closing its former connections failed", parts.config.id)


def _names(ids: Iterable[str]) -> str:
    return ", ".join(ids) or "none"
