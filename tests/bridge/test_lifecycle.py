"""The item lifecycle, the failure policy, the scheduler, the runner's outcomes and the
commands, without a socket: a real store in tmp_path, a recording announcer, and the
transfer pipeline replaced by a scripted one."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.lifecycle import machine, runner
from q4d_bridge.lifecycle.machine import Lifecycle, TransitionError
from q4d_bridge.lifecycle.policy import after_failure
from q4d_bridge.models import FINISHED_STATES, Item, ItemState, Label
from q4d_bridge.mqtt.commands import CommandError
from q4d_bridge.persistence.store import Message, Store
from q4d_bridge.rules import Resolution
from q4d_bridge.transfer.errors import ErrorCode, TransferError
from q4d_bridge.transfer.pipeline import Job, Landed

from tests.bridge.test_queue import item as make_item
from tests.helpers.configs import bridge_config

ALL = list(ItemState)
UNFINISHED = [s for s in ALL if s not in FINISHED_STATES]


class Heard:
    """The announcer: what would go to MQTT."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bool]] = []
        self.pending = 0

    def event_message(self, kind: str, item: Item | None = None, **extra: Any) -> Message:
        body = {"event": kind, "item": None if item is None else item.id, **extra}
        return Message("event", json.dumps(body).encode())

    def label_messages(self, item: Item, label: Label) -> list[Message]:
        return [Message("label", f"{item.hash}\t{label.value}".encode())]

    def item(self, item: Item, *, immediate: bool = False) -> None:
        self.published.append((item.id, item.state.value, immediate))

    def outbox_pending(self) -> None:
        self.pending += 1

    def state_changed(self) -> None:
        pass


def stored(store: Store, state: ItemState = ItemState.QUEUED, **fields: Any) -> Item:
    """An item admitted through the store, then put in `state` as a row."""
    from q4d_bridge.models import CompletionEvent

    n = len(store.items()) + 1
    event = CompletionEvent(event_id=f"e{n}", seedbox="sb1", path=f"/r/x{n}", name=f"x{n}",
                            hash=f"{n:040x}", size=100)  # fmt: skip
    resolution = Resolution(None, "default", Path("/lib"), Path(f"/lib/x{n}"), "sftp")
    (admission,) = store.admit([(event, resolution)])
    item = admission.item
    item.state = state
    for key, value in fields.items():
        setattr(item, key, value)
    store.save(item)
    return item


@pytest.fixture
def life(tmp_path: Path) -> tuple[Lifecycle, Store, Heard]:
    store = Store(tmp_path / "q4d.sqlite3")
    heard = Heard()
    return Lifecycle(store, heard), store, heard


def events(store: Store) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for _, m in store.outbox() if m.topic == "event"]


def test_transitions_check_the_state_they_start_from(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, _ = life
    err = TransferError(ErrorCode.CONNECTION, "x")
    allowed: dict[str, tuple[set[ItemState], Callable[[Item], None]]] = {
        "start": ({ItemState.QUEUED, ItemState.WAITING}, lambda i: lifecycle.start(i, 1.0)),
        "phase": (set(machine.ACTIVE_STATES), lambda i: lifecycle.phase(i, ItemState.VERIFYING, 1, ())),
        "done": (set(machine.ACTIVE_STATES), lambda i: lifecycle.done(i, 1, {})),
        "waiting": (set(machine.ACTIVE_STATES), lambda i: lifecycle.waiting(i, err, 9.0, attempt_spent=True)),
        "failed": (set(machine.ACTIVE_STATES), lambda i: lifecycle.failed(i, err)),
        "requeued": (set(machine.ACTIVE_STATES), lambda i: lifecycle.requeued(i, "requeued")),
        "recovered": (set(machine.ACTIVE_STATES), lifecycle.recovered),
        "unconfigured": (set(UNFINISHED), lifecycle.unconfigured),
        "cancelled": (set(UNFINISHED), lifecycle.cancelled),
        "retried": (set(FINISHED_STATES) | {ItemState.WAITING}, lifecycle.retried),
        "paused": (set(UNFINISHED) - {ItemState.VERIFYING}, lifecycle.paused),
    }  # fmt: skip
    for name, (states, change) in allowed.items():
        for state in ALL:
            item = stored(store, state)
            lifecycle.items[item.id] = item
            if state in states:
                change(item)
            else:
                with pytest.raises(TransitionError, match=f"is {state.value}: cannot"):
                    change(item)
                assert item.state is state, name  # nothing changed


def test_an_attempt_from_start_to_done(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, heard = life
    item = stored(store, bytes_done=60)  # what a previous attempt showed
    lifecycle.start(item, 1000.0)
    assert (item.state, item.attempts, item.bytes_done) == (ItemState.TRANSFERRING, 1, 0)
    lifecycle.phase(item, ItemState.TRANSFERRING, 500, ("link",))
    assert item.size == 500
    lifecycle.progress(item, 200, 10.0, 30.0)
    lifecycle.progress(item, 150, 10.0, 35.0)  # never backwards within an attempt
    assert item.bytes_done == 200
    lifecycle.phase(item, ItemState.VERIFYING, 500, ())
    lifecycle.done(item, 500, {"verified": "size"}, verified="size")
    assert (item.state, item.bytes_done, item.progress) == (ItemState.DONE, 500, 100.0)
    assert [e["event"] for e in events(store)] == ["started", "completed"]
    assert events(store)[-1]["verified"] == "size"
    assert [m.payload for _, m in store.outbox() if m.topic == "label"][-1].endswith(b"\tDONE")
    assert store.counters()["completed"] == 1 and store.counters()["bytes_transferred"] == 500
    history = [h["event"] for h in reversed(store.history(item.id))]
    assert history == ["queued", "started", "transferring", "verifying", "completed"]
    assert {"skipped": ["link"]} in [h["detail"] for h in store.history(item.id)]
    assert heard.published[-1] == (item.id, "done", True)


def test_progress_reaches_the_store_at_a_bounded_rate(
    life: tuple[Lifecycle, Store, Heard], monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle, store, _ = life
    item = stored(store)
    clock = [1000.0]
    monkeypatch.setattr(machine.time, "time", lambda: clock[0])
    lifecycle.start(item, 1000.0)
    lifecycle.progress(item, 10, 1.0, None)  # within the interval of the `started` commit
    assert store.items()[0].bytes_done == 0
    clock[0] += machine.PROGRESS_SAVE_INTERVAL + 1
    lifecycle.progress(item, 20, 1.0, None)
    lifecycle.progress(item, 30, 1.0, None)
    assert store.items()[0].bytes_done == 20
    clock[0] += machine.PROGRESS_SAVE_INTERVAL + 1
    lifecycle.progress(item, 40, 1.0, None)
    assert store.items()[0].bytes_done == 40


def test_failures_waits_and_requeues(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, _ = life
    space = TransferError(ErrorCode.INSUFFICIENT_SPACE, "full")
    item = stored(store)
    lifecycle.start(item, 1.0)
    lifecycle.waiting(item, space, 61.0, attempt_spent=False)
    assert (item.state, item.attempts, item.next_attempt_at) == (ItemState.WAITING, 0, 61.0)
    assert item.error_code == "insufficient_space"
    lifecycle.start(item, 62.0)
    lifecycle.waiting(
        item, TransferError(ErrorCode.STALLED, "no progress"), 99.0, attempt_spent=True
    )
    assert item.attempts == 1 and "delay" in store.history(item.id)[0]["detail"]
    lifecycle.start(item, 100.0)
    lifecycle.requeued(item, "paused")
    assert (item.state, item.attempts) == (ItemState.QUEUED, 1)
    lifecycle.start(item, 101.0)
    lifecycle.failed(item, TransferError(ErrorCode.AUTH_FAILED, "denied"))
    assert (item.state, item.error_code, item.finished_at) == (
        ItemState.FAILED,
        "auth_failed",
        item.updated_at,
    )
    assert store.counters()["failed"] == 1
    assert [e["event"] for e in events(store)][-4:] == ["waiting", "started", "started", "failed"]
    lifecycle.retried(item)
    assert (item.state, item.attempts, item.bytes_done, item.error_code) == (
        ItemState.QUEUED,
        0,
        0,
        None,
    )
    assert events(store)[-1] == {"event": "queued", "item": item.id, "retry": True}


def test_recovery_and_configuration_changes(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, _ = life
    caught = stored(store, ItemState.VERIFYING, attempts=2)
    lifecycle.recovered(caught)
    assert (caught.state, caught.attempts) == (ItemState.QUEUED, 1)
    orphan = stored(store, ItemState.WAITING)
    lifecycle.unconfigured(orphan)
    assert (orphan.state, orphan.error_code) == (ItemState.FAILED, "not_configured")
    assert store.counters()["failed"] == 1


def test_pause_resume_priority_and_forget(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, _ = life
    item = stored(store)
    lifecycle.items[item.id] = item
    lifecycle.paused(item)
    lifecycle.prioritised(item, 7)
    lifecycle.resumed(item)
    assert (item.paused, item.priority) == (False, 7)
    assert [h["event"] for h in reversed(store.history(item.id))][-3:] == [
        "paused",
        "priority",
        "resumed",
    ]
    running = stored(store, ItemState.TRANSFERRING)
    lifecycle.paused(running, recorded=False)  # its return to the queue records it
    assert running.paused and store.history(running.id)[0]["event"] == "queued"
    lifecycle.forget([item.id])
    assert item.id not in lifecycle.items


TRANSFERS = parse_config(
    bridge_config(
        Path("/tmp/q4d-unused"),
        Path("/tmp/q4d-lib"),
        key=Path(__file__),
        known_hosts=Path(__file__),
    )
).transfers


@pytest.mark.parametrize(
    ("code", "attempts", "retry", "spent", "counts"),
    [
        (ErrorCode.INSUFFICIENT_SPACE, 1, True, False, False),  # waits, costs nothing
        (ErrorCode.CONNECTION, 1, True, True, True),
        (ErrorCode.CONNECTION, TRANSFERS.max_attempts, False, True, True),  # out of attempts
        (ErrorCode.HOST_KEY_MISMATCH, 1, False, True, True),  # permanent, trips the breaker
        (ErrorCode.REMOTE_MISSING, 1, False, True, False),  # permanent, says nothing of the box
        (ErrorCode.VERIFY_FAILED, 1, False, True, False),
        (ErrorCode.NO_SPACE, 1, True, True, False),
        (ErrorCode.STALLED, 1, True, True, True),
    ],
)
def test_what_a_failure_leads_to(
    code: ErrorCode, attempts: int, retry: bool, spent: bool, counts: bool
) -> None:
    item = make_item(1, attempts=attempts)
    outcome = after_failure(item, TransferError(code, "x"), TRANSFERS, 100.0, random.Random(1))
    assert (outcome.retry_at is not None, outcome.attempt_spent, outcome.counts_for_breaker) == (
        retry, spent, counts,
    )  # fmt: skip
    if code is ErrorCode.INSUFFICIENT_SPACE:
        assert outcome.retry_at == 100.0 + TRANSFERS.space_recheck
    elif retry:
        assert (
            100.0 + TRANSFERS.retry_initial / 2
            <= (outcome.retry_at or 0)
            <= 100.0 + TRANSFERS.retry_max
        )


# --- scheduler, runner and commands, with the pipeline scripted ---------------------------


class Script:
    """Stands in for transfer.pipeline.run_transfer: each attempt waits to be told how
    it ends."""

    def __init__(self) -> None:
        self.attempts: dict[str, asyncio.Future[Landed | TransferError]] = {}
        self.started: list[str] = []

    async def __call__(self, job: Job, **_kw: Any) -> Landed:
        self.started.append(job.item_id)
        future = self.attempts[job.item_id] = asyncio.get_running_loop().create_future()
        reporter = _kw["reporter"]
        reporter.phase(ItemState.TRANSFERRING, _remote(100))
        reporter.progress(40)
        try:
            outcome = await future
        finally:  # stopped from outside: no longer an attempt to end
            if self.attempts.get(job.item_id) is future:
                del self.attempts[job.item_id]
        if isinstance(outcome, TransferError):
            raise outcome
        reporter.phase(ItemState.VERIFYING, _remote(100))
        return outcome

    def end(self, item_id: str, outcome: Landed | TransferError) -> None:
        self.attempts.pop(item_id).set_result(outcome)


def _remote(size: int) -> Any:
    from q4d_bridge.transfer.payload import RemoteEntry, RemoteFile

    return RemoteEntry(False, (RemoteFile("", size),), path="/r/x")


@pytest.fixture
async def bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Bridge, Script]]:
    script = Script()
    monkeypatch.setattr(runner, "run_transfer", script)
    key = tmp_path / "key"
    key.write_text("k")
    raw = bridge_config(
        tmp_path / "data", tmp_path / "lib", key=key, known_hosts=key, remote_root="/r"
    )
    raw["transfers"].update(max_concurrent=2, retry_initial=0.05, retry_max=0.05, breaker_failures=2,
                            breaker_cooldown=1, max_attempts=3)  # fmt: skip
    raw["seedboxes"][0]["hook_flush"] = ""  # no SSH link to hold
    bridge = Bridge(parse_config(raw))
    task = asyncio.create_task(bridge.scheduler.run(bridge.runner.launch))
    try:
        yield bridge, script
    finally:
        task.cancel()
        await bridge.runner.stop()
        bridge.store.close()


def queue(bridge: Bridge, count: int, **fields: Any) -> list[Item]:
    made = []
    for _ in range(count):
        item = stored(bridge.store, **fields)
        bridge.lifecycle.items[item.id] = bridge.lifecycle.unfinished[item.id] = item
        made.append(item)
    bridge.scheduler.wake()
    return made


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_the_scheduler_keeps_to_the_limits_and_the_pause(
    bridge: tuple[Bridge, Script],
) -> None:
    b, script = bridge
    a, c, d = queue(b, 3)
    await settle()
    assert script.started == [a.id, c.id]  # max_concurrent 2, oldest first
    b.controller.pause(None)
    await settle()
    assert (a.state, c.state) == (ItemState.QUEUED, ItemState.QUEUED)  # stopped, resumable
    assert a.attempts == 0 and d.state is ItemState.QUEUED
    assert b.store.history(a.id)[0]["event"] == "paused"
    b.controller.resume(None)
    await until(lambda: len(script.started) == 4)
    script.end(a.id, Landed(100, "size"))
    await until(lambda: d.id in script.started)
    assert a.state is ItemState.DONE


async def test_retries_back_off_then_fail_and_the_breaker_rests_the_seedbox(
    bridge: tuple[Bridge, Script],
) -> None:
    b, script = bridge
    (item,) = queue(b, 1)
    await until(lambda: item.id in script.attempts)
    script.end(item.id, TransferError(ErrorCode.CONNECTION, "reset"))
    await until(lambda: item.state is ItemState.WAITING)
    assert item.attempts == 1 and b.state().seedboxes["sb1"].consecutive_failures == 1
    await until(lambda: item.id in script.attempts)  # due after the 0.05 s backoff
    script.end(item.id, TransferError(ErrorCode.CONNECTION, "reset"))
    await until(lambda: b.state().seedboxes["sb1"].breaker == "open")
    assert "breaker_open" in [e["event"] for e in (json.loads(m.payload) for _, m in b.store.outbox()
                                                   if m.topic.endswith("/event"))]  # fmt: skip
    await settle()
    assert item.id not in script.attempts  # resting: nothing starts during the cool-down
    await until(lambda: item.id in script.attempts, timeout=3)  # half-open after 1 s
    script.end(item.id, TransferError(ErrorCode.CONNECTION, "reset"))
    await until(lambda: item.state is ItemState.FAILED)  # third and last attempt
    assert item.attempts == 3


async def test_space_costs_no_attempt_and_success_closes_the_breaker(
    bridge: tuple[Bridge, Script],
) -> None:
    b, script = bridge
    (item,) = queue(b, 1)
    await until(lambda: item.id in script.attempts)
    script.end(item.id, TransferError(ErrorCode.INSUFFICIENT_SPACE, "full"))
    await until(lambda: item.state is ItemState.WAITING)
    assert item.attempts == 0
    b.scheduler.breakers["sb1"].failure(0.0)
    item.next_attempt_at = 0.0  # space found: due now
    b.scheduler.wake()
    await until(lambda: item.id in script.attempts)
    script.end(item.id, Landed(100, "pieces", 2))
    await until(lambda: item.state is ItemState.DONE)
    assert b.scheduler.breakers["sb1"].failures == 0


async def test_commands_from_every_state(bridge: tuple[Bridge, Script]) -> None:
    b, _ = bridge
    b.controller.pause(None)  # nothing starts on its own here
    for state in ALL:
        (item,) = queue(b, 1, state=state)
        if state in FINISHED_STATES:
            force = state is ItemState.DONE  # a done item is fetched again only on request
            assert b.controller.retry(item.id, force=force) == [item]
            assert item.state is ItemState.QUEUED and item.refetch is force
            continue
        if state is ItemState.VERIFYING:
            for refused in (b.controller.cancel, b.controller.pause):
                with pytest.raises(CommandError, match="is verifying"):
                    refused(item.id)
            continue
        if state is ItemState.WAITING:
            assert b.controller.retry(item.id) == [item]
        else:
            with pytest.raises(CommandError) as refused:
                b.controller.retry(item.id)
            assert refused.value.code == "invalid_state"
        assert b.controller.cancel(item.id) == item.id
        assert item.state is ItemState.CANCELLED
        with pytest.raises(CommandError, match="is cancelled"):
            b.controller.cancel(item.id)


async def test_cancel_and_pause_of_a_running_item(bridge: tuple[Bridge, Script]) -> None:
    b, script = bridge
    first, second = queue(b, 2)
    await until(lambda: len(script.attempts) == 2)
    b.controller.cancel(first.id)
    b.controller.pause(second.id)
    await until(lambda: first.state is ItemState.CANCELLED and second.state is ItemState.QUEUED)
    assert second.paused and second.attempts == 0
    await settle()
    assert second.id not in script.attempts  # paused items do not start
    b.controller.resume(second.id)
    await until(lambda: second.id in script.attempts)


async def test_retry_all_failed_and_unconfigured(bridge: tuple[Bridge, Script]) -> None:
    b, _ = bridge
    b.controller.pause(None)
    failed = queue(b, 2, state=ItemState.FAILED)
    (gone,) = queue(b, 1, state=ItemState.FAILED, destination="removed")
    assert sorted(i.id for i in b.controller.retry(None)) == sorted(i.id for i in failed)
    assert gone.state is ItemState.FAILED
    with pytest.raises(CommandError) as refused:
        b.controller.retry(gone.id)
    assert refused.value.code == "not_configured"


async def test_every_user_action_and_start_is_one_info_line(
    bridge: tuple[Bridge, Script], caplog: pytest.LogCaptureFixture
) -> None:
    b, script = bridge
    caplog.set_level(logging.INFO, logger="q4d_bridge")
    first, second = queue(b, 2)
    await until(lambda: len(script.attempts) == 2)
    b.controller.pause(first.id)
    await until(lambda: first.state is ItemState.QUEUED)
    b.controller.resume(first.id)
    b.controller.cancel(second.id)
    await until(lambda: second.state is ItemState.CANCELLED)
    b.controller.retry(second.id)
    b.controller.set_priority(second.id, 5)
    b.controller.set_limits(1024, 3)
    b.controller.pause(None)
    b.controller.resume(None)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for name, item in (("x1", first), ("x2", second)):
        for action in (
            ("starting", "paused", "resumed")
            if item is first
            else ("cancelled", "retry", "priority")
        ):
            assert any(
                line.startswith(action) and item.id in line and repr(name) in line for line in lines
            ), (action, lines)
    assert any(line.startswith("paused") and "back in the queue" in line for line in lines)
    for line in ("bandwidth limit set to 1024 bytes/s (0: none)", "max_concurrent set to 3",
                 "queue paused", "queue resumed"):  # fmt: skip
        assert line in lines
