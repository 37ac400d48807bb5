"""Seedbox removals the HTTP API could not finish: an app deleted a torrent while its
seedbox's client did not answer. Kept until the client removes it (or says it is gone),
so a torrent the app let go never stays on the seedbox unseen (api/removal.py)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .store import Store


@dataclass(frozen=True, slots=True)
class PendingRemoval:
    key: str  # the hash the app knows the torrent by
    seedbox: str
    info_hash: str  # the hash its client knows it by
    delete_data: bool
    attempts: int = 0  # failed so far
    next_at: float = 0.0  # when to try (again): due at once after a restart
    last_error: str | None = None


class ApiRemovals:
    def __init__(self, store: Store) -> None:
        self.store = store

    def pending(self) -> list[PendingRemoval]:
        """Soonest first."""
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT key, seedbox, info_hash, delete_data, attempts, next_at, last_error "
                "FROM api_removals ORDER BY next_at"
            ).fetchall()
        return [_removal(r) for r in rows]

    def save(self, removal: PendingRemoval) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO api_removals (key, seedbox, info_hash, delete_data, "
                "attempts, next_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (removal.key, removal.seedbox, removal.info_hash, int(removal.delete_data),
                 removal.attempts, removal.next_at, removal.last_error),
            )  # fmt: skip

    def forget(self, key: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM api_removals WHERE key = ?", (key,))


def _removal(row: sqlite3.Row) -> PendingRemoval:
    return PendingRemoval(
        row["key"], row["seedbox"], row["info_hash"], bool(row["delete_data"]),
        row["attempts"], row["next_at"], row["last_error"],
    )  # fmt: skip
