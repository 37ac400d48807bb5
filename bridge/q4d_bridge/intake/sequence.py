"""Completion-event sequences: finding the events that never arrived.

Each seedbox outbox numbers the completions it sends (`stream`, `seq`) and, after each
delivery, retains the last number it sent on `<prefix>/seedbox/<id>/sequence`. The
bridge notes every number it receives, durably and before the message is acknowledged,
and reports the numbers still missing once they are overdue: a broker that dropped
messages queued for the bridge (Mosquitto keeps 1000 by default), an outbox lost with
its host. Reconciliation with the torrent client then finds those completions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from ..persistence.store import Message, Store

# How long a number may be late (reordered by a flush in progress, redelivered after
# a reconnect) before it counts as lost.
GRACE = 120.0
# A stream that has said nothing for this long is forgotten (a reinstalled outbox).
STREAM_RETENTION = 90 * 86400.0


@dataclass(frozen=True, slots=True)
class Gap:
    """Numbers of one stream that never arrived, now reported lost."""

    seedbox: str
    stream: str
    count: int
    first: int
    last: int


@dataclass(slots=True)
class _Stream:
    floor: int | None  # every number up to here arrived or was reported (None: no event yet)
    high: int  # the highest number known to exist
    lost: int = 0
    received: set[int] = field(default_factory=set)  # numbers above the floor
    gap_since: float | None = None

    def missing(self) -> int:
        return 0 if self.floor is None else self.high - self.floor - len(self.received)

    def compact(self) -> None:
        if self.floor is None:
            return
        while self.floor + 1 in self.received:
            self.floor += 1
            self.received.discard(self.floor)


class Sequences:
    """The streams of every seedbox, in memory and in two tables of the bridge's store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._streams: dict[tuple[str, str], _Stream] = {}
        with store.transaction() as db:
            for row in db.execute(
                "SELECT seedbox, stream, floor, high, lost FROM sequence_streams"
            ):
                self._streams[(row["seedbox"], row["stream"])] = _Stream(
                    row["floor"], row["high"], row["lost"]
                )
            for row in db.execute("SELECT seedbox, stream, seq FROM sequence_received"):
                stream = self._streams.get((row["seedbox"], row["stream"]))
                if stream is not None and (stream.floor is None or row["seq"] > stream.floor):
                    stream.received.add(row["seq"])
        for stream in self._streams.values():
            stream.compact()

    def received(self, seedbox: str, stream_id: str, seq: int, now: float) -> None:
        """An event numbered seq arrived (accepted, duplicate or rejected alike). The
        first event of a stream sets where counting starts: earlier numbers went to
        whoever listened before."""
        stream = self._streams.setdefault((seedbox, stream_id), _Stream(None, seq))
        if stream.floor is None:
            stream.floor = seq - 1
        stream.high = max(stream.high, seq)
        fresh = seq > stream.floor and seq not in stream.received
        if fresh:
            stream.received.add(seq)
            stream.compact()
            if seq < stream.high:
                stream.gap_since = None  # still filling in: the grace period starts over
        with self._store.transaction() as db:
            self._save(db, seedbox, stream_id, stream, now)
            if fresh:
                db.execute(
                    "INSERT OR IGNORE INTO sequence_received VALUES (?, ?, ?)",
                    (seedbox, stream_id, seq),
                )

    def announced(self, seedbox: str, stream_id: str, seq: int, now: float) -> None:
        """A seedbox's outbox says it has sent up to seq."""
        stream = self._streams.setdefault((seedbox, stream_id), _Stream(None, seq))
        stream.high = max(stream.high, seq)
        with self._store.transaction() as db:
            self._save(db, seedbox, stream_id, stream, now)

    def overdue(
        self,
        now: float,
        notice: Callable[[Gap], Message] | None = None,
        grace: float | None = None,
    ) -> list[Gap]:
        """Report the numbers missing for longer than grace, and count them as lost;
        each gap's notice is queued in the transaction that records it."""
        grace = GRACE if grace is None else grace
        gaps: list[Gap] = []
        for (seedbox, stream_id), stream in self._streams.items():
            if stream.floor is None or stream.missing() <= 0:
                stream.gap_since = None
                continue
            if stream.gap_since is None:
                stream.gap_since = now
                continue
            if now - stream.gap_since < grace:
                continue
            count = stream.missing()
            last = stream.high
            while last in stream.received:
                last -= 1
            gaps.append(Gap(seedbox, stream_id, count, stream.floor + 1, last))
            stream.lost += count
            stream.floor, stream.received, stream.gap_since = stream.high, set(), None
        with self._store.transaction() as db:
            for (seedbox, stream_id), stream in self._streams.items():
                if stream.floor is not None:
                    db.execute(
                        "DELETE FROM sequence_received WHERE seedbox = ? AND stream = ? "
                        "AND seq <= ?",
                        (seedbox, stream_id, stream.floor),
                    )
            for gap in gaps:
                self._save(db, gap.seedbox, gap.stream, self._streams[gap.seedbox, gap.stream], now)
            if notice is not None:
                Store.enqueue_in(db, [notice(gap) for gap in gaps], now)
        return gaps

    def lost(self, seedbox: str) -> int:
        """Events of this seedbox reported lost so far."""
        return sum(s.lost for (sb, _), s in self._streams.items() if sb == seedbox)

    def missing(self, seedbox: str) -> int:
        """Numbers of this seedbox not (yet) received."""
        return sum(s.missing() for (sb, _), s in self._streams.items() if sb == seedbox)

    def prune(self, now: float) -> None:
        cutoff = now - STREAM_RETENTION
        with self._store.transaction() as db:
            stale = [
                (r["seedbox"], r["stream"])
                for r in db.execute(
                    "SELECT seedbox, stream FROM sequence_streams WHERE updated_at < ?", (cutoff,)
                )
            ]
            for key in stale:
                db.execute("DELETE FROM sequence_streams WHERE seedbox = ? AND stream = ?", key)
                db.execute("DELETE FROM sequence_received WHERE seedbox = ? AND stream = ?", key)
                self._streams.pop(key, None)

    @staticmethod
    def _save(
        db: sqlite3.Connection, seedbox: str, stream_id: str, stream: _Stream, now: float
    ) -> None:
        db.execute(
            "INSERT INTO sequence_streams VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (seedbox, stream) DO UPDATE SET floor = excluded.floor, "
            "high = excluded.high, lost = excluded.lost, updated_at = excluded.updated_at",
            (seedbox, stream_id, stream.floor, stream.high, stream.lost, now),
        )
