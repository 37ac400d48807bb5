"""What the HTTP API changed about a torrent, kept apart from the request or item it
shows: the category and tags an *arr app set (`setCategory`, `addTags`), and when it
deleted the torrent (`torrents/delete`), so that it stays out of the list."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .store import Store


@dataclass(slots=True)
class ApiMark:
    hash: str  # what the *arr app knows the torrent by
    category: str | None = None  # None: the torrent's own; "": none
    tags: tuple[str, ...] = ()
    removed_at: float | None = None


class ApiMarks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self) -> dict[str, ApiMark]:
        with self.store.transaction() as db:
            rows = db.execute("SELECT hash, category, tags, removed_at FROM api_marks")
            return {
                r["hash"]: ApiMark(
                    r["hash"], r["category"], tuple(json.loads(r["tags"])), r["removed_at"]
                )
                for r in rows
            }

    def save(self, marks: list[ApiMark]) -> None:
        with self.store.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO api_marks (hash, category, tags, removed_at) "
                "VALUES (?, ?, ?, ?)",
                [(m.hash, m.category, json.dumps(list(m.tags)), m.removed_at) for m in marks],
            )

    def forget(self, info_hash: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM api_marks WHERE hash = ?", (info_hash,))
