"""Add requests and dispatch decisions in the bridge's store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from ..dispatch.duplicates import normalise_name
from ..dispatch.requests import Request, RequestState
from .store import Message, Store

REQUEST_COLUMNS = (
    "id, created_at, updated_at, source, category, name, info_hash, v1, v2, seedbox, size, "
    "state, decision_id, paused, progress, bytes_done, error_code, error_message, item_id, "
    "local_path, magnet, torrent_file, retracted, name_key"
)
# adds are counted by final outcome in the store's counters, as "decisions.<outcome>"
OUTCOME_COUNTER = "decisions."


def _row(request: Request) -> tuple[Any, ...]:
    return (
        request.id,
        request.created_at,
        request.updated_at,
        request.source,
        request.category,
        request.name,
        request.info_hash,
        request.v1,
        request.v2,
        request.seedbox,
        request.size,
        request.state.value,
        request.decision_id,
        int(request.paused),
        request.progress,
        request.bytes_done,
        request.error_code,
        request.error_message,
        request.item_id,
        request.local_path,
        request.magnet,
        request.torrent_file,
        int(request.retracted),
        normalise_name(request.name) if request.name else None,
    )


def _request(row: sqlite3.Row) -> Request:
    return Request(
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        source=row["source"],
        category=row["category"],
        name=row["name"],
        info_hash=row["info_hash"],
        v1=row["v1"],
        v2=row["v2"],
        seedbox=row["seedbox"],
        size=row["size"],
        state=RequestState(row["state"]),
        decision_id=row["decision_id"],
        paused=bool(row["paused"]),
        progress=row["progress"],
        bytes_done=row["bytes_done"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        item_id=row["item_id"],
        local_path=row["local_path"],
        magnet=row["magnet"],
        torrent_file=None if row["torrent_file"] is None else bytes(row["torrent_file"]),
        retracted=bool(row["retracted"]),
    )


class DispatchRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        # told of every request committed (the HTTP API lists them as torrents)
        self.observers: list[Callable[[Request], None]] = []

    def record(
        self,
        decision: dict[str, Any],
        request: Request | None = None,
        *,
        keep: int,
        messages: Iterable[Message] = (),
        outcome: str | None = None,
    ) -> None:
        """A decision (and the request it made) in one transaction, keeping the last
        `keep` decisions; a decision already recorded is replaced (its outcome known).
        `outcome`: the add's final outcome, counted (see _count)."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO decisions (id, at, body) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                (decision["id"], decision["at"], json.dumps(decision)),
            )
            db.execute(
                "DELETE FROM decisions WHERE seq <= (SELECT max(seq) FROM decisions) - ?", (keep,)
            )
            if request is not None:
                self._save(db, request)
            self.store.enqueue_in(db, list(messages), decision["at"])
            self._count(db, outcome)
        if request is not None:
            self._observed(request)

    def save(
        self, request: Request, messages: Iterable[Message] = (), outcome: str | None = None
    ) -> None:
        with self.store.transaction() as db:
            self._save(db, request)
            self.store.enqueue_in(db, list(messages), request.updated_at)
            self._count(db, outcome)
        self._observed(request)

    def _observed(self, request: Request) -> None:
        for observer in self.observers:
            observer(request)

    def _count(self, db: sqlite3.Connection, outcome: str | None) -> None:
        """Each add is counted once, at its final outcome, with what records it: the
        kept decisions are only the last few, and an `added` decision is recorded before
        the client answers (it may still turn `failed`)."""
        if outcome is not None:
            self.store.incr_in(db, f"{OUTCOME_COUNTER}{outcome}")

    def counts(self) -> dict[str, int]:
        """Every request by state (requests are kept; only their queue entry retracts)."""
        found = dict.fromkeys((s.value for s in RequestState), 0)
        with self.store.transaction() as db:
            for row in db.execute("SELECT state, count(*) AS n FROM requests GROUP BY state"):
                found[row["state"]] = row["n"]
        return found

    @staticmethod
    def _save(db: sqlite3.Connection, request: Request) -> None:
        marks = ", ".join("?" * len(REQUEST_COLUMNS.split(",")))
        db.execute(
            f"INSERT OR REPLACE INTO requests ({REQUEST_COLUMNS}) VALUES ({marks})", _row(request)
        )

    def requests(
        self, states: Iterable[RequestState] | None = None, limit: int | None = None
    ) -> list[Request]:
        """Newest first."""
        where, params = "", []
        if states is not None:
            wanted = [s.value for s in states]
            where = f"WHERE state IN ({', '.join('?' * len(wanted))})"
            params = wanted
        query = f"SELECT {REQUEST_COLUMNS} FROM requests {where} ORDER BY created_at DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(str(limit))
        with self.store.transaction() as db:
            return [_request(r) for r in db.execute(query, params)]

    def matching(self, hashes: Iterable[str], name: str | None) -> list[Request]:
        """Requests that did not fail with one of these hashes or this release name."""
        wanted = sorted(hashes)
        marks = ", ".join("?" * len(wanted))
        key = normalise_name(name) if name else None
        query = (
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE state != 'failed' AND ("
            f"info_hash IN ({marks}) OR v1 IN ({marks}) OR substr(v2, 1, 40) IN ({marks}) "
            f"OR v2 IN ({marks}) OR name_key = ?) ORDER BY created_at DESC"
        )
        with self.store.transaction() as db:
            return [_request(r) for r in db.execute(query, [*wanted * 4, key])]

    def decisions(self, limit: int) -> list[dict[str, Any]]:
        """Newest first."""
        with self.store.transaction() as db:
            rows = db.execute("SELECT body FROM decisions ORDER BY seq DESC LIMIT ?", (limit,))
            return [json.loads(r["body"]) for r in rows]
