"""Group commit: the messages that arrived together are recorded in one transaction and
acknowledged only after its commit; a bad message rolls back alone, a store error leaves
the whole batch unacknowledged with the broker."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiomqtt
import pytest
from q4d_bridge.config.model import BrokerConfig
from q4d_bridge.mqtt.link import MqttLink
from q4d_bridge.mqtt.router import Router
from q4d_bridge.mqtt.topics import Topics
from q4d_bridge.persistence.store import Store

from tests.helpers.mqtt import publish
from tests.helpers.services import Mosquitto

TOPICS = Topics("q4d", "test")
COMPLETED = "q4d/seedbox/sb1/completed"


def message(payload: bytes, mid: int = 1) -> aiomqtt.Message:
    return aiomqtt.Message(COMPLETED, payload, qos=1, retain=False, mid=mid, properties=None)


def recording_router(store: Store, commits: list[int]) -> Router:
    """A router whose completions each write a row in their own transaction (a
    savepoint inside the batch); b"bug" fails after writing, b"disk" fails in SQLite."""

    def completion(_topic: str, payload: bytes) -> None:
        with store.transaction() as db:
            db.execute("INSERT INTO settings VALUES (?, '1')", (payload.decode(),))
            if payload == b"bug":
                raise RuntimeError("a bug in a handler")
            if payload == b"disk":
                raise sqlite3.OperationalError("disk I/O error")

    def atomic():  # type: ignore[no-untyped-def]
        commits.append(store._db.total_changes)
        return store.transaction()

    return Router(
        TOPICS,
        atomic=atomic,
        command=lambda _p: None,
        sequence=lambda _t, _p: None,
        completion=completion,
    )


def keys(store: Store) -> set[str]:
    return {r["key"] for r in store._db.execute("SELECT key FROM settings")}


def test_a_batch_commits_once_and_a_bad_message_rolls_back_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    commits: list[int] = []
    router = recording_router(store, commits)
    router.handle_batch([message(b"a"), message(b"bug"), message(b"b")])
    assert keys(store) == {"a", "b"}  # the bug's own row went with its savepoint
    assert len(commits) == 1 and not store._db.in_transaction
    other = Store(tmp_path / "q.db")  # committed: another connection sees it
    assert keys(other) == {"a", "b"}


def test_a_store_error_records_none_of_the_batch(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    router = recording_router(store, [])
    with pytest.raises(sqlite3.OperationalError):
        router.handle_batch([message(b"a"), message(b"disk"), message(b"b")])
    assert keys(store) == set() and not store._db.in_transaction


class _Publisher:
    """What the link asks of the publisher on (re)connect."""

    def status_payload(self, state: str) -> bytes:
        return state.encode()

    async def attach(self, client: aiomqtt.Client) -> None:
        return None

    async def detach(self, *, graceful: bool) -> None:
        return None


def link(mosquitto: Mosquitto, handle, fatal) -> MqttLink:  # type: ignore[no-untyped-def]
    broker = BrokerConfig(
        host="127.0.0.1", port=mosquitto.port, username=None, password=None, tls=None,
        client_id="group-commit", topic_prefix="q4d", keepalive=10, session_expiry=3600,
    )  # fmt: skip
    return MqttLink(
        broker, TOPICS, _Publisher(), subscriptions=[TOPICS.completed_filter],  # type: ignore[arg-type]
        handle=handle, fatal=fatal,
    )  # fmt: skip


async def session(mosquitto: Mosquitto, handle, until, seconds: float = 20.0) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    """Run a link until `until(link)` holds, a fatal stop or `seconds`: (fatal, held)."""
    stopped = asyncio.Event()
    running = link(mosquitto, handle, stopped.set)
    task = asyncio.create_task(running.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline and not (until(running) or stopped.is_set()):
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return stopped.is_set(), bool(until(running))


async def test_a_batch_is_acknowledged_only_after_its_commit(mosquitto: Mosquitto) -> None:
    """Events queued by the broker arrive together and are handled as batches; a batch
    whose recording fails is not acknowledged (the broker delivers it again), and one
    recorded is (a later session gets nothing more)."""
    connected = await session(mosquitto, lambda _b: None, lambda link: link.connected.is_set())
    assert connected == (False, True)  # the persistent session exists
    sent = [f"ev-{n}".encode() for n in range(40)]
    await publish(mosquitto.port, [(COMPLETED, p) for p in sent])

    def failing(batch: list[aiomqtt.Message]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    assert (await session(mosquitto, failing, lambda _l: False))[0]  # fatal: none acknowledged
    batches: list[list[bytes]] = []

    def recording(batch: list[aiomqtt.Message]) -> None:
        batches.append([m.payload for m in batch])  # type: ignore[misc]

    await session(mosquitto, recording, lambda _l: sum(map(len, batches)) >= len(sent))
    assert sorted(p for b in batches for p in b) == sorted(sent)  # all of them, again
    assert max(map(len, batches)) > 1, "what arrived together was not handled together"
    batches.clear()
    await session(mosquitto, recording, lambda _l: bool(batches), seconds=1.5)
    assert batches == [], "acknowledged messages came again"
