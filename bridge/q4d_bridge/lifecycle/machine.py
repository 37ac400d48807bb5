"""The item lifecycle: every state change an item can go through, in one place.

Each transition checks the state it starts from (a change that does not apply raises
TransitionError), changes the item, and commits it in one transaction together with its
history entry, the counters it moves and the MQTT messages announcing it (events and
seedbox labels go through the store's outbox), then publishes the item. What is
recorded is always announced, and counted exactly once.

    queued ──start──▶ transferring ──(looked at)──▶ transferring ──▶ verifying ──▶ done
      ▲                  │  │                                          │        ▲
      │     stopped ◀────┘  └──── failed: waiting (retry, space) ◀─────┤  landed│(steps)
      │     (requeue)                  or failed (permanent, out of attempts) processing
      └── retry ◀── failed / waiting / done (force) / cancelled   cancel ──▶ cancelled

A payload whose plan has post-processing steps lands into `processing`: its steps run
in order (lifecycle/post.py), and it is done when the last one is. A step that fails for
good fails the item with the payload in place, and a retry runs the steps again from the
one that failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..models import (
    ACTIVE_STATES,
    FINISHED_STATES,
    Item,
    ItemState,
    Label,
    StepState,
    StepStatus,
)
from ..persistence.store import Message, Store
from ..transfer.errors import ErrorCode, TransferError

_LOGGER = logging.getLogger(__name__)
# bytes_done reaches the database at most this often per item: `q4d-bridge status` and a
# restarted bridge see recent progress, without a write per progress report.
PROGRESS_SAVE_INTERVAL = 5.0

QUEUED_OR_WAITING = frozenset({ItemState.QUEUED, ItemState.WAITING})
UNFINISHED = frozenset(set(ItemState) - FINISHED_STATES)


class TransitionError(ValueError):
    """A change that does not apply to the item's current state."""


class Announcer(Protocol):
    """How the queue makes itself heard (mqtt.publisher.Publisher)."""

    def event_message(self, kind: str, item: Item | None = None, **extra: Any) -> Message: ...

    def label_messages(self, item: Item, label: Label) -> list[Message]: ...

    def item(self, item: Item, *, immediate: bool = False) -> None: ...

    def outbox_pending(self) -> None: ...

    def state_changed(self) -> None: ...


class Lifecycle:
    def __init__(self, store: Store, announcer: Announcer) -> None:
        self.store = store
        self.announcer = announcer
        self.items: dict[str, Item] = {i.id: i for i in store.items()}
        # The items not finished: what the scheduler looks through on every wake, where
        # a long history would make it walk thousands of done items each time.
        self.unfinished: dict[str, Item] = {
            i.id: i for i in self.items.values() if i.state in UNFINISHED
        }
        # Moves whenever the finished items change (one finishes, leaves that state, is
        # changed or forgotten): what is summed up about them holds until it moves.
        self.finished_changes = 0
        self._progress_saved: dict[str, float] = {}
        # told of every committed change (the add requests follow their items)
        self.observers: list[Callable[[Item], None]] = []

    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    # --- the transitions ---------------------------------------------------------------

    def admitted(self, item: Item) -> None:
        """A new item the store admitted (with its `queued` event and labels)."""
        self.items[item.id] = self.unfinished[item.id] = item
        _LOGGER.info("queued %s %r -> %s", item.id, item.name, item.local_path)
        self.announcer.item(item, immediate=True)
        self.announcer.outbox_pending()
        self._observed(item)

    def start(self, item: Item, now: float) -> None:
        """An attempt begins. Progress starts over from what this attempt finds on disk,
        so a resumed item never shows the last attempt's figure while it restarts."""
        _check(item, "start", QUEUED_OR_WAITING)
        item.state = ItemState.TRANSFERRING
        item.attempts += 1
        item.started_at = now
        item.next_attempt_at = None
        item.bytes_done = 0
        item.rate = 0.0
        item.eta = None
        item.updated_at = now
        self._record(item, "started", {"attempt": item.attempts}, event="started")
        _LOGGER.info("starting %s %r (attempt %d)", item.id, item.name, item.attempts)

    def phase(self, item: Item, state: ItemState, size: int, skipped: tuple[str, ...]) -> None:
        """The payload was looked at (transferring, with its real size) or fetched
        (verifying)."""
        _check(item, state.value, ACTIVE_STATES)
        item.state = state
        item.size = size
        item.updated_at = time.time()
        if skipped:
            _LOGGER.warning(
                "%s: %d symlink(s) or special file(s) in the payload are not fetched: %s",
                item.id, len(skipped), ", ".join(skipped[:10]),
            )  # fmt: skip
        self._record(item, state.value, {"skipped": list(skipped)} if skipped else None)

    def progress(self, item: Item, done: int, rate: float, eta: float | None) -> None:
        """Bytes in staging: never fewer than before within one attempt."""
        if item.state not in ACTIVE_STATES:
            return  # a late report from an attempt that already ended
        item.bytes_done = max(item.bytes_done, done)
        item.rate = rate
        item.eta = eta
        item.updated_at = now = time.time()
        if now - self._progress_saved.get(item.id, 0.0) >= PROGRESS_SAVE_INTERVAL:
            self._progress_saved[item.id] = now
            self.store.save(item)
        self.announcer.item(item)

    def done(self, item: Item, size: int, detail: dict[str, Any], **extra: Any) -> None:
        _check(item, "done", ACTIVE_STATES)
        now = time.time()
        item.state = ItemState.DONE
        item.bytes_done = item.size = size
        item.rate = 0.0
        item.eta = None
        item.last_error = item.error_code = None
        item.finished_at = item.updated_at = now
        self._record(
            item, "completed", {**detail, "seconds": now - (item.started_at or now)},
            event="completed", label=Label.DONE,
            counters={"completed": 1, "bytes_transferred": size}, **extra,
        )  # fmt: skip
        _LOGGER.info("completed %s %r (%d bytes)", item.id, item.name, size)

    def landed(self, item: Item, size: int, detail: dict[str, Any], **extra: Any) -> None:
        """Verified and in the library, with post-processing steps to run: the seedbox
        gets its DONE label now (the payload is home), `completed` waits for the steps."""
        _check(item, "landed", ACTIVE_STATES)
        now = time.time()
        item.state = ItemState.PROCESSING
        item.bytes_done = item.size = size
        item.rate = 0.0
        item.eta = None
        item.last_error = item.error_code = None
        item.refetch = False
        item.updated_at = now
        item.steps = tuple(StepStatus(name, at=now) for name in item.plan.steps())
        self._record(
            item, "landed", {**detail, "seconds": now - (item.started_at or now)},
            event="landed", label=Label.DONE, counters={"bytes_transferred": size},
            steps=[s.name for s in item.steps], **extra,
        )  # fmt: skip
        _LOGGER.info("landed %s %r; steps: %s", item.id, item.name, ", ".join(item.plan.steps()))

    def step_started(self, item: Item, name: str) -> None:
        _check(item, f"start {name}", frozenset({ItemState.PROCESSING}))
        status = self.step_of(item, name)
        self._set_step(item, status, StepState.RUNNING, status.detail, attempts=status.attempts + 1)
        self._record(item, "step_started", {"step": name, "attempt": status.attempts + 1})

    def step_retry(self, item: Item, name: str, message: str, until: float) -> None:
        """A transient error: the step runs again at `until`."""
        _check(item, f"retry {name}", frozenset({ItemState.PROCESSING}))
        self._set_step(item, self.step_of(item, name), StepState.RETRYING, message)
        item.last_error = f"{name}: {message}"
        item.next_attempt_at = until
        self._record(item, "step_retry", {"step": name, "message": message, "at": until})
        _LOGGER.warning("%s: %s failed (%s); again in %.0fs", item.id, name, message,
                        until - item.updated_at)  # fmt: skip

    def step_done(self, item: Item, name: str, detail: str) -> None:
        _check(item, f"finish {name}", frozenset({ItemState.PROCESSING}))
        self._set_step(item, self.step_of(item, name), StepState.DONE, detail)
        item.last_error = None
        item.next_attempt_at = None
        self._record(item, "step_done", {"step": name, "detail": detail}, event="step_done",
                     step=name, result=detail)  # fmt: skip
        _LOGGER.info("%s: %s done: %s", item.id, name, detail)

    def step_failed(self, item: Item, name: str, message: str) -> None:
        """A step failed for good: so does the item, its payload left where it landed."""
        _check(item, f"fail {name}", frozenset({ItemState.PROCESSING}))
        self._set_step(item, self.step_of(item, name), StepState.FAILED, message)
        item.state = ItemState.FAILED
        item.error_code = ErrorCode.POST_PROCESSING.value
        item.last_error = f"{name}: {message}"
        item.next_attempt_at = None
        item.finished_at = item.updated_at
        self._record(
            item, "failed", {"code": item.error_code, "step": name, "message": message},
            event="failed", counters={"failed": 1}, step=name,
        )  # fmt: skip
        _LOGGER.error("failed %s %r at %s: %s", item.id, item.name, name, message)

    def processed(self, item: Item) -> None:
        """Every step done: the item is."""
        _check(item, "done", frozenset({ItemState.PROCESSING}))
        item.state = ItemState.DONE
        item.last_error = item.error_code = None
        item.finished_at = item.updated_at = time.time()
        steps = {s.name: s.detail for s in item.steps}
        self._record(item, "completed", {"steps": steps}, event="completed",
                     counters={"completed": 1}, steps=steps)  # fmt: skip
        _LOGGER.info("completed %s %r after %s", item.id, item.name, ", ".join(steps))

    def refetch_failed(self, item: Item, err: TransferError) -> None:
        """A done item fetched again on request could not be: it stays done, with the
        library copy it had."""
        _check(item, "done", ACTIVE_STATES)
        self._failed_attempt(item, err)
        item.state = ItemState.DONE
        item.refetch = False
        item.last_error = f"fetching it again failed ({err.message}); the library copy stays"
        item.finished_at = item.updated_at
        self._record(item, "refetch_failed", {"code": err.code.value, "message": err.message},
                     event="refetch_failed")  # fmt: skip
        _LOGGER.warning("%s: %s", item.id, item.last_error)

    def waiting(self, item: Item, err: TransferError, until: float, *, attempt_spent: bool) -> None:
        """The attempt failed and the item tries again at `until` (a retry, or more free
        space: then the attempt is not counted)."""
        _check(item, "waiting", ACTIVE_STATES)
        self._failed_attempt(item, err)
        if not attempt_spent:
            item.attempts = max(0, item.attempts - 1)
        item.state = ItemState.WAITING
        item.next_attempt_at = until
        detail: dict[str, Any] = {"code": err.code.value, "message": err.message}
        if attempt_spent:
            detail["delay"] = until - item.updated_at
        self._record(item, "waiting", detail, event="waiting")

    def failed(self, item: Item, err: TransferError) -> None:
        """The item failed for good (a permanent error, or no attempt left)."""
        _check(item, "failed", ACTIVE_STATES)
        self._failed_attempt(item, err)
        item.state = ItemState.FAILED
        item.finished_at = item.updated_at
        self._record(
            item, "failed", {"code": err.code.value, "message": err.message},
            event="failed", label=Label.FAILED, counters={"failed": 1},
        )  # fmt: skip
        _LOGGER.error("failed %s %r: %s (%s)", item.id, item.name, err.message, err.code.value)

    def requeued(self, item: Item, why: str) -> None:
        """A running attempt was stopped (pause, a new rate limit) and the item waits in
        the queue; its staging files stay, so the next attempt resumes."""
        _check(item, why, ACTIVE_STATES)
        item.state = ItemState.QUEUED
        item.attempts = max(0, item.attempts - 1)
        item.rate = 0.0
        item.eta = None
        item.updated_at = time.time()
        self._record(item, why)
        _LOGGER.info("%s %s %r: back in the queue", why, item.id, item.name)

    def recovered(self, item: Item) -> None:
        """Caught mid-transfer by a crash or a stop: back in the queue, resuming."""
        _check(item, "recovered", ACTIVE_STATES)
        item.state = ItemState.QUEUED
        item.attempts = max(0, item.attempts - 1)
        item.updated_at = time.time()
        self.store.save(item, "recovered")
        _LOGGER.info("resuming %s (%s) after restart", item.id, item.name)

    def unconfigured(self, item: Item) -> None:
        """Its seedbox or destination left the configuration: failed at start-up."""
        _check(item, "not_configured", UNFINISHED)
        item.state = ItemState.FAILED
        item.error_code = ErrorCode.NOT_CONFIGURED.value
        item.last_error = (
            f"seedbox {item.seedbox!r} or destination {item.destination!r} is no longer configured"
        )
        item.finished_at = item.updated_at = time.time()
        self._record(
            item, "failed", {"code": item.error_code}, event="failed",
            label=Label.FAILED, counters={"failed": 1},
        )  # fmt: skip
        _LOGGER.error("%s: %s", item.id, item.last_error)

    def cancelled(self, item: Item) -> None:
        _check(item, "cancel", UNFINISHED)
        item.state = ItemState.CANCELLED
        item.rate = 0.0
        item.eta = None
        item.finished_at = item.updated_at = time.time()
        self._record(item, "cancelled", event="cancelled")
        _LOGGER.info("cancelled %s %r", item.id, item.name)

    def retried(self, item: Item) -> None:
        """Back in the queue with fresh attempts, its old error and figures cleared. A
        done item comes back only to be fetched again (`refetch`): the controller asks
        for that explicitly."""
        _check(item, "retry", FINISHED_STATES | {ItemState.WAITING})
        item.refetch = item.state is ItemState.DONE
        item.state = ItemState.QUEUED
        item.attempts = 0
        item.bytes_done = 0
        item.steps = ()
        item.last_error = item.error_code = None
        item.next_attempt_at = item.finished_at = None
        item.updated_at = time.time()
        refetch: dict[str, Any] = {"refetch": True} if item.refetch else {}
        self._record(item, "retry", event="queued", retry=True, **refetch)
        _LOGGER.info("retry %s %r", item.id, item.name)

    def grabbed_again(self, item: Item, request_id: str) -> None:
        """A finished item's torrent added again (an app deleted it, then grabbed the
        same release): queued for the new request, a done one fetched again."""
        item.request_id = request_id
        self.retried(item)

    def steps_retried(self, item: Item) -> None:
        """An item whose post-processing failed runs its steps again from the one that
        failed; its payload is in the library, so nothing is fetched."""
        _check(item, "retry", frozenset({ItemState.FAILED}))
        item.state = ItemState.PROCESSING
        item.steps = tuple(
            s if s.state is StepState.DONE else StepStatus(s.name, at=time.time())
            for s in item.steps
        )
        item.last_error = item.error_code = None
        item.finished_at = None
        item.updated_at = time.time()
        self._record(
            item, "retry_steps", [s.name for s in item.steps if s.state is not StepState.DONE]
        )
        _LOGGER.info("retry %s %r from step %s", item.id, item.name, item.step)

    def paused(self, item: Item, *, recorded: bool = True) -> None:
        """The item's own pause flag. For a running item (recorded=False) the caller stops
        the attempt, and its return to the queue records the pause."""
        _check(item, "pause", UNFINISHED - {ItemState.VERIFYING})
        item.paused = True
        _LOGGER.info("paused %s %r", item.id, item.name)
        if recorded:
            item.updated_at = time.time()
            self._record(item, "paused")

    def resumed(self, item: Item) -> None:
        item.paused = False
        item.updated_at = time.time()
        self._record(item, "resumed")
        _LOGGER.info("resumed %s %r", item.id, item.name)

    def prioritised(self, item: Item, priority: int) -> None:
        item.priority = priority
        item.updated_at = time.time()
        self._record(item, "priority", {"priority": priority})
        _LOGGER.info("priority of %s %r: %d", item.id, item.name, priority)

    def forget(self, item_ids: Iterable[str]) -> None:
        """Items pruned from history (their removal is already in the outbox)."""
        for item_id in item_ids:
            self.items.pop(item_id, None)
            self.unfinished.pop(item_id, None)
            self.finished_changes += 1
            self._progress_saved.pop(item_id, None)

    # --- recording -----------------------------------------------------------------------

    @staticmethod
    def step_of(item: Item, name: str) -> StepStatus:
        for status in item.steps:
            if status.name == name:
                return status
        raise TransitionError(f"item {item.id} has no step {name}")

    @staticmethod
    def _set_step(
        item: Item, old: StepStatus, state: StepState, detail: str | None, *, attempts: int = -1
    ) -> None:
        item.updated_at = now = time.time()
        new = StepStatus(old.name, state, old.attempts if attempts < 0 else attempts, detail, now)
        item.steps = tuple(new if s is old else s for s in item.steps)

    def _failed_attempt(self, item: Item, err: TransferError) -> None:
        item.rate = 0.0
        item.eta = None
        item.last_error = err.message
        item.error_code = err.code.value
        item.updated_at = time.time()

    def _record(
        self,
        item: Item,
        history: str,
        detail: Any = None,
        *,
        event: str | None = None,
        label: Label | None = None,
        counters: dict[str, int] | None = None,
        **extra: Any,
    ) -> None:
        """Commit an item change with its history entry and the event/label announcing
        it, then publish. Everything here reaches MQTT even if the bridge dies right after."""
        messages = []
        if event is not None:
            messages.append(self.announcer.event_message(event, item, **extra))
        if label is not None:
            messages += self.announcer.label_messages(item, label)
        self.store.save(item, history, detail, messages, counters)
        if item.state not in UNFINISHED or item.id not in self.unfinished:
            self.finished_changes += 1
        if item.state in UNFINISHED:
            self.unfinished[item.id] = item
        else:
            self.unfinished.pop(item.id, None)
        self._progress_saved[item.id] = time.time()
        self.announcer.item(item, immediate=True)
        if messages:
            self.announcer.outbox_pending()
        self._observed(item)

    def _observed(self, item: Item) -> None:
        for observer in self.observers:
            observer(item)


def _check(item: Item, change: str, allowed: frozenset[ItemState]) -> None:
    if item.state not in allowed:
        raise TransitionError(f"item {item.id} is {item.state.value}: cannot {change}")
