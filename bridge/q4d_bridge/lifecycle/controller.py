"""What commands do to the queue: retry, cancel, pause and resume (the queue or one
item), priority, limits, the queue listing and a rescan of the torrent clients.

Arguments arrive validated (mqtt/commands.py); a change that does not apply to an item's
state is answered `invalid_state`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from ..config.model import Config
from ..models import FINISHED_STATES, Item, ItemState, StepState
from ..mqtt.commands import CommandError
from ..mqtt.listing import ItemPayloads
from ..mqtt.payloads import EncodedItems
from ..postprocess.cleanup import CleanupWatcher
from ..transfer.bandwidth import Bandwidth
from .machine import Lifecycle, TransitionError
from .post import PostRunner
from .runner import REQUEUE, Runner
from .scheduler import Scheduler

_LOGGER = logging.getLogger(__name__)
TOOL_ENGINES = frozenset({"lftp", "rsync"})


class Controller:
    def __init__(
        self,
        config: Config,
        lifecycle: Lifecycle,
        scheduler: Scheduler,
        runner: Runner,
        bandwidth: Bandwidth,
        post: PostRunner,
        payloads: ItemPayloads,
        *,
        state_changed: Callable[[], None],
        rescan: Callable[[str | None], Awaitable[dict[str, Any]]],
        cleanup: CleanupWatcher,
    ) -> None:
        self.config = config
        self.lifecycle = lifecycle
        self.scheduler = scheduler
        self.runner = runner
        self.bandwidth = bandwidth
        self.post = post
        self.payloads = payloads
        self.state_changed = state_changed
        self._rescan = rescan
        self._cleanup = cleanup

    def retry(self, item_id: str | None, *, force: bool = False) -> list[Item]:
        """Failed items again: from their transfer, or from the post-processing step that
        failed (the payload is home). A done item is fetched again only with `force`."""
        if item_id is None:
            items = self.lifecycle.items.values()
            targets = [i for i in items if i.state is ItemState.FAILED and self.configured(i)]
        else:
            item = self._item(item_id)
            if not self.configured(item):
                raise CommandError(
                    "not_configured",
                    f"{_named(item)}: its seedbox {item.seedbox} or destination "
                    f"{item.destination} is no longer configured",
                )
            if item.state is ItemState.DONE and not force:
                raise CommandError(
                    "invalid_state",
                    f"{_named(item)} is done and in the library; to fetch it again, retry "
                    "with force (the library copy is replaced once the new one is verified)",
                )
            targets = [item]
        for item in targets:
            with _refused(item, "retry"):
                if item.step is not None and item.step.state is StepState.FAILED:
                    self.lifecycle.steps_retried(item)
                    self.post.launch(item)
                else:
                    self.lifecycle.retried(item)
        self.scheduler.wake()
        return targets

    def cancel(self, item_id: str) -> str:
        """Stop an item. One in post-processing stops its steps; what landed stays."""
        item = self._item(item_id)
        self._not_verifying(item, "cancel")
        with _refused(item, "cancel"):
            if item.state is ItemState.PROCESSING:
                self.post.cancel(item_id)
                self.lifecycle.cancelled(item)
            else:
                self.runner.cancel(item)
        return item_id

    def pause(self, item_id: str | None) -> list[str]:
        if item_id is None:
            _LOGGER.info("queue paused")
            self.scheduler.set_paused(True)
            return [
                i
                for i in list(self.runner.running)
                if self.lifecycle.items[i].state is not ItemState.VERIFYING
                and self.runner.interrupt(i, REQUEUE)
            ]
        item = self._item(item_id)
        self._not_verifying(item, "pause")
        if item.state is ItemState.PROCESSING:
            raise CommandError(
                "invalid_state", f"{_named(item)} is home; its post-processing cannot pause"
            )
        with _refused(item, "pause"):
            # A running attempt is stopped: going back to the queue records the pause.
            self.lifecycle.paused(item, recorded=not self.runner.interrupt(item_id, REQUEUE))
        return [item_id]

    def resume(self, item_id: str | None) -> list[str]:
        if item_id is None:
            _LOGGER.info("queue resumed")
            self.scheduler.set_paused(False)
            return []
        self.lifecycle.resumed(self._item(item_id))
        self.scheduler.wake()
        return [item_id]

    def set_priority(self, item_id: str, priority: int) -> str:
        self.lifecycle.prioritised(self._item(item_id), priority)
        self.scheduler.wake()
        return item_id

    def set_limits(self, bandwidth_limit: int | None, max_concurrent: int | None) -> dict[str, int]:
        # A running lftp or rsync keeps the share it started with (limit ÷ max_concurrent):
        # it restarts when the limit changes, or when more slots make its share too big
        # for the total to stay within the limit.
        more_slots = (
            max_concurrent is not None and max_concurrent > self.scheduler.limits.global_max
        )
        if max_concurrent is not None:
            _LOGGER.info("max_concurrent set to %d", max_concurrent)
            self.scheduler.set_max_concurrent(max_concurrent)
        limit = self.bandwidth.rate if bandwidth_limit is None else bandwidth_limit
        new_limit = limit != self.bandwidth.rate
        if new_limit:
            _LOGGER.info("bandwidth limit set to %d bytes/s (0: none)", limit)
            self.bandwidth.set_rate(limit)
            self.scheduler.store.set_setting("bandwidth_limit", limit)
        if new_limit or (more_slots and self.bandwidth.rate):
            for item_id in list(self.runner.running):
                item = self.lifecycle.items[item_id]
                if (
                    self.runner.engine_of(item) in TOOL_ENGINES
                    and item.state is ItemState.TRANSFERRING
                ):
                    self.runner.interrupt(item_id, REQUEUE)  # resumes with its new share
        self.state_changed()
        return {
            "bandwidth_limit": self.bandwidth.rate,
            "max_concurrent": self.scheduler.limits.global_max,
        }

    def get_queue(self, states: list[ItemState] | None, limit: int, offset: int) -> EncodedItems:
        return self.payloads.page(self.lifecycle.items.values(), states, limit, offset)

    def rescan(self, seedbox_id: str | None) -> Awaitable[dict[str, Any]]:
        if seedbox_id is not None and seedbox_id not in self.config.seedboxes:
            raise CommandError("not_found", f"no seedbox {seedbox_id}")
        _LOGGER.info("rescan of %s", seedbox_id or "every seedbox")
        return self._rescan(seedbox_id)

    async def seedbox_cleanup(self, dry_run: bool) -> dict[str, Any]:
        """The torrents whose clean-up goal is reached: listed, or removed now."""
        decisions = await self._cleanup.run_once(dry_run=dry_run)
        return {"dry_run": dry_run, "torrents": [asdict(d) for d in decisions]}

    def configured(self, item: Item) -> bool:
        return self.config.serves(item)

    def _item(self, item_id: str) -> Item:
        item = self.lifecycle.get(item_id)
        if item is None:
            raise CommandError("not_found", f"no item {item_id}")
        return item

    @staticmethod
    def _not_verifying(item: Item, change: str) -> None:
        # The verified payload is being moved into the library: that step is atomic.
        if item.state is ItemState.VERIFYING:
            raise CommandError(
                "invalid_state", f"{_named(item)} is verifying; it finishes in a moment"
            )
        if item.state in FINISHED_STATES:
            raise CommandError("invalid_state", _nothing_to(item, change))


def _named(item: Item) -> str:
    """How a refusal names an item: by its torrent's name, which the user knows."""
    return f'"{item.name}"'


def _nothing_to(item: Item, change: str) -> str:
    state = "has failed" if item.state is ItemState.FAILED else f"is {item.state.value}"
    return f"{_named(item)} {state}; nothing to {change}"


class _refused:
    """A transition that does not apply to the item, answered `invalid_state`."""

    def __init__(self, item: Item, change: str) -> None:
        self.item = item
        self.change = change

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, err: BaseException | None, tb: object) -> None:
        if isinstance(err, TransitionError):
            raise CommandError("invalid_state", _nothing_to(self.item, self.change)) from err
