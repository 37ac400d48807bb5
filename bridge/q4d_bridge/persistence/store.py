"""SQLite (WAL) store: queue items, seen event ids, history, rejected events, MQTT outbox.

Every statement is a short local transaction (well under a millisecond), so the bridge
calls it directly from the event loop. WAL with synchronous=NORMAL survives a killed
process without losing committed rows; only a power cut can roll back the last commits.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..models import FINISHED_STATES, CompletionEvent, Item, ItemState
from ..rules import Resolution
from .rows import ITEM_COLUMNS, item_id_for, item_to_row, row_to_item, steps_json
from .schema import migrate

REJECTED_PAYLOAD_LIMIT = 64 * 1024
# Per-seedbox counters (+ the seedbox id). Not `rejected.`: that prefix counts by reason.
REJECTIONS_COUNTER = "rejections."
DUPLICATES_COUNTER = "duplicates."


@dataclass(frozen=True, slots=True)
class Admission:
    """Outcome of admitting one event: a new item, or the item it duplicates."""

    item: Item
    duplicate: bool
    reason: str | None = None
    # A finished item's torrent that an add request fetched again (a new request waits
    # for it): the item comes back for that request, no duplicate.
    grabbed_again_by: str | None = None


class Message(NamedTuple):
    """An MQTT message that must reach the broker: labels, lifecycle events, removals."""

    topic: str
    payload: bytes
    retain: bool = False


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        migrate(self._db)

    @classmethod
    def open_readonly(cls, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        return db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change. Inside another transaction (the incoming messages that the
        MQTT link records together, mqtt/router.py) it is a savepoint: an error rolls
        back its own writes alone, and what it wrote commits with the outer one."""
        if self._db.in_transaction:
            self._db.execute("SAVEPOINT part")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK TO part")
                self._db.execute("RELEASE part")
                raise
            self._db.execute("RELEASE part")
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- intake --------------------------------------------------------------------

    def admit(
        self,
        batch: Sequence[tuple[CompletionEvent, Resolution]],
        *,
        messages_for: Callable[[Item], Sequence[Message]] = lambda _item: (),
        duplicate_messages: Callable[[Admission], Sequence[Message]] = lambda _known: (),
        now: float | None = None,
    ) -> list[Admission]:
        """Record a batch of valid events, and the messages each new item announces, in
        one transaction; a duplicate changes no item, and is counted (in all and for
        its seedbox) and announced in that transaction."""
        now = time.time() if now is None else now
        results: list[Admission] = []
        with self.transaction() as db:
            for event, resolution in batch:
                admission = self._admit_one(db, event, resolution, now)
                if admission.duplicate:
                    self.enqueue_in(db, duplicate_messages(admission), now)
                    self._incr(db, "duplicates", 1)
                    self._incr(db, f"{DUPLICATES_COUNTER}{event.seedbox}", 1)
                else:
                    self.enqueue_in(db, messages_for(admission.item), now)
                    self._incr(db, "received", 1)
                results.append(admission)
        return results

    def _admit_one(
        self,
        db: sqlite3.Connection,
        event: CompletionEvent,
        resolution: Resolution,
        now: float,
    ) -> Admission:
        seen = db.execute(
            "SELECT item_id FROM seen_events WHERE event_id = ?", (event.event_id,)
        ).fetchone()
        if seen is not None:
            existing = self._get(db, seen["item_id"]) if seen["item_id"] else None
            if existing is not None:  # a resend of an event seen before
                return Admission(existing, duplicate=True, reason="event_id")
        if event.hash is not None:
            row = db.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE seedbox = ? AND hash = ? LIMIT 1",
                (event.seedbox, event.hash),
            ).fetchone()
        else:
            row = db.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE seedbox = ? AND hash IS NULL "
                "AND remote_path = ? LIMIT 1",
                (event.seedbox, event.path),
            ).fetchone()
        if row is not None:
            existing = row_to_item(row)
            db.execute(
                "INSERT OR IGNORE INTO seen_events VALUES (?, ?, ?, ?)",
                (event.event_id, event.seedbox, existing.id, now),
            )
            return _duplicate(db, existing, event, "hash" if event.hash else "path")
        item = Item(
            id=item_id_for(event.seedbox, event.hash, event.path),
            event_id=event.event_id,
            seedbox=event.seedbox,
            hash=event.hash,
            name=event.name,
            remote_path=event.path,
            destination=resolution.destination,
            local_path=str(resolution.local_path),
            category=event.category,
            tags=event.tags,
            type_code=resolution.type_code,
            size=event.size,
            state=ItemState.QUEUED,
            classic=event.classic,
            received_at=now,
            updated_at=now,
            engine=resolution.engine,
            request_id=_request_for(db, event.hash),
            plan=resolution.post,
        )
        self._insert(db, item)
        db.execute(
            "INSERT OR REPLACE INTO seen_events VALUES (?, ?, ?, ?)",
            (event.event_id, event.seedbox, item.id, now),
        )
        self._history(db, item.id, "queued", None, now)
        return Admission(item, duplicate=False)

    def record_rejected(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        detail: str,
        messages: Sequence[Message] = (),
        now: float | None = None,
        *,
        seedbox: str | None = None,
    ) -> None:
        """Keep, count and announce a rejection; with `seedbox` (a configured one) also
        its count and last rejection."""
        now = time.time() if now is None else now
        with self.transaction() as db:
            self.enqueue_in(db, messages, now)
            db.execute(
                "INSERT INTO rejected (at, topic, reason, detail, payload) VALUES (?, ?, ?, ?, ?)",
                (now, topic, reason, detail, payload[:REJECTED_PAYLOAD_LIMIT]),
            )
            self._incr(db, f"rejected.{reason}", 1)
            self._incr(db, "rejected", 1)
            if seedbox is not None:
                self._incr(db, f"{REJECTIONS_COUNTER}{seedbox}", 1)
                db.execute(
                    "INSERT OR REPLACE INTO last_rejections VALUES (?, ?, ?, ?)",
                    (seedbox, now, reason, detail),
                )

    def last_rejections(self) -> dict[str, dict[str, Any]]:
        """Each seedbox's last rejection, `{reason, message, at}` (as the state has it)."""
        rows = self._db.execute("SELECT seedbox, at, reason, detail FROM last_rejections")
        return {
            r["seedbox"]: {"reason": r["reason"], "message": r["detail"], "at": r["at"]}
            for r in rows
        }

    def rejected(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, topic, reason, detail FROM rejected ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return [dict(r) for r in rows]

    # --- items ---------------------------------------------------------------------

    def _insert(self, db: sqlite3.Connection, item: Item) -> None:
        db.execute(
            f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join('?' * 30)})",
            item_to_row(item),
        )

    def _get(self, db: sqlite3.Connection, item_id: str) -> Item | None:
        row = db.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else row_to_item(row)

    def items(self, states: Iterable[ItemState] | None = None) -> list[Item]:
        """Oldest first. Read as plain tuples and sorted here: thousands of 30-column
        rows cost SQLite's sorter (and sqlite3.Row) more than the list's sort."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        if states is None:
            cursor.execute(f"SELECT {ITEM_COLUMNS} FROM items")
        else:
            wanted = [s.value for s in states]
            marks = ", ".join("?" * len(wanted))
            cursor.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE state IN ({marks})", wanted)
        items = [row_to_item(r) for r in cursor]
        items.sort(key=lambda i: i.received_at)
        return items

    def save(
        self,
        item: Item,
        history: str | None = None,
        detail: Any = None,
        messages: Sequence[Message] = (),
        counters: Mapping[str, int] | None = None,
    ) -> None:
        """Persist an item's mutable fields with its history entry, the messages that
        announce the change and the counters it moves, atomically: what is recorded is
        always announced, and counted exactly once."""
        with self.transaction() as db:
            self.enqueue_in(db, messages, item.updated_at)
            for name, by in (counters or {}).items():
                self._incr(db, name, by)
            db.execute(
                "UPDATE items SET state=?, size=?, priority=?, paused=?, bytes_done=?, attempts=?, "
                "last_error=?, error_code=?, started_at=?, finished_at=?, next_attempt_at=?, "
                "updated_at=?, local_path=?, destination=?, steps=?, refetch=?, request_id=? "
                "WHERE id=?",
                (
                    item.state.value,
                    item.size,
                    item.priority,
                    int(item.paused),
                    item.bytes_done,
                    item.attempts,
                    item.last_error,
                    item.error_code,
                    item.started_at,
                    item.finished_at,
                    item.next_attempt_at,
                    item.updated_at,
                    item.local_path,
                    item.destination,
                    steps_json(item.steps),
                    int(item.refetch),
                    item.request_id,
                    item.id,
                ),
            )
            if history is not None:
                self._history(db, item.id, history, detail, item.updated_at)

    def prune(
        self,
        retention: float,
        now: float | None = None,
        removal: Callable[[str], Message] | None = None,
    ) -> list[str]:
        """Drop finished items (and old history) older than retention; returns removed ids.

        `removal` builds the message that retracts an item (an empty retained payload);
        it is queued in the same transaction, so a pruned item never lingers on MQTT."""
        now = time.time() if now is None else now
        cutoff = now - retention
        finished = [s.value for s in FINISHED_STATES]
        with self.transaction() as db:
            ids = [
                r["id"]
                for r in db.execute(
                    f"SELECT id FROM items WHERE state IN ({', '.join('?' * len(finished))}) "
                    "AND ifnull(finished_at, updated_at) < ?",
                    (*finished, cutoff),
                )
            ]
            db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])
            if removal is not None:
                self.enqueue_in(db, [removal(i) for i in ids], now)
            db.execute("DELETE FROM seen_events WHERE received_at < ?", (cutoff,))
            db.execute("DELETE FROM history WHERE at < ?", (cutoff,))
            db.execute("DELETE FROM rejected WHERE at < ?", (cutoff,))
        return ids

    def history(self, item_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if item_id is None:
            rows = self._db.execute(
                "SELECT at, item_id, event, detail FROM history ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT at, item_id, event, detail FROM history WHERE item_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (item_id, limit),
            ).fetchall()
        return [
            {**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows
        ]

    @staticmethod
    def _history(db: sqlite3.Connection, item_id: str, event: str, detail: Any, at: float) -> None:
        db.execute(
            "INSERT INTO history (at, item_id, event, detail) VALUES (?, ?, ?, ?)",
            (at, item_id, event, None if detail is None else json.dumps(detail)),
        )

    # --- outbox --------------------------------------------------------------------

    @staticmethod
    def enqueue_in(db: sqlite3.Connection, messages: Sequence[Message], now: float) -> None:
        """Queue messages inside a transaction of the caller's (see transaction())."""
        db.executemany(
            "INSERT INTO outbox (topic, payload, retain, created_at) VALUES (?, ?, ?, ?)",
            [(m.topic, m.payload, int(m.retain), now) for m in messages],
        )

    def enqueue(self, messages: Sequence[Message]) -> None:
        self.enqueue_in(self._db, messages, time.time())

    def outbox(self, limit: int = 200) -> list[tuple[int, Message]]:
        rows = self._db.execute(
            "SELECT seq, topic, payload, retain FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [
            (r["seq"], Message(r["topic"], bytes(r["payload"]), bool(r["retain"]))) for r in rows
        ]

    def remove_outbox(self, seqs: Iterable[int]) -> None:
        with self.transaction() as db:  # one commit for the batch, not one per row
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    # --- counters and settings -----------------------------------------------------

    @staticmethod
    def _incr(db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    @staticmethod
    def incr_in(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        """Count inside a transaction of the caller's (see transaction())."""
        Store._incr(db, name, by)

    def incr(self, name: str, by: int = 1) -> None:
        self._incr(self._db, name, by)

    def counters(self) -> dict[str, int]:
        return {r["name"]: r["value"] for r in self._db.execute("SELECT * FROM counters")}

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_setting(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO settings VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


def _duplicate(
    db: sqlite3.Connection, existing: Item, event: CompletionEvent, reason: str
) -> Admission:
    """A new event for a torrent there is an item for: a duplicate, unless the item is
    finished and a new add request waits for its torrent (grabbed again after an app
    deleted it)."""
    again = _request_for(db, event.hash) if existing.state in FINISHED_STATES else None
    if again is not None and again != existing.request_id:
        return Admission(existing, duplicate=True, reason=reason, grabbed_again_by=again)
    return Admission(existing, duplicate=True, reason=reason)


def _request_for(db: sqlite3.Connection, info_hash: str | None) -> str | None:
    """The newest add request still waiting for this torrent's payload, if any
    (`completed`: its client finished it before the hook's event came)."""
    if info_hash is None:
        return None
    row = db.execute(
        "SELECT id FROM requests WHERE item_id IS NULL "
        "AND state IN ('requested', 'added', 'downloading', 'completed') "
        "AND (info_hash = ? OR v1 = ? OR substr(v2, 1, 40) = ?) ORDER BY created_at DESC LIMIT 1",
        (info_hash, info_hash, info_hash),
    ).fetchone()
    return None if row is None else str(row["id"])
