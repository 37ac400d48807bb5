"""The seedbox clean-up in the bridge's store: the done items whose plan has a goal
(a ratio, a seeding time) and whose torrent is still on the seedbox as far as q4d knows,
and what the clean-up removed (postprocess/cleanup.py)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..models import ItemState
from ..postprocess.plan import CleanupPlan, PostPlan
from .store import Store


@dataclass(frozen=True, slots=True)
class Waiting:
    """A done item whose seedbox torrent waits for its clean-up goal."""

    item_id: str
    seedbox: str
    hash: str
    name: str
    plan: CleanupPlan


@dataclass(frozen=True, slots=True)
class Cleaned:
    item_id: str
    seedbox: str
    hash: str
    at: float
    reason: str
    removed: bool  # False: it was gone from the seedbox already
    data_deleted: bool


class CleanupRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    def waiting(self) -> list[Waiting]:
        """Done items (landed, verified and every post-processing step finished: a
        hand-off's repair reads the seedbox's copy) with a goal in their plan, not
        cleaned up yet. Oldest first."""
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT id, seedbox, hash, name, plan FROM items WHERE state = ? "
                "AND hash IS NOT NULL AND plan IS NOT NULL "
                "AND (json_extract(plan, '$.cleanup.ratio') IS NOT NULL "
                "OR json_extract(plan, '$.cleanup.seeding_time') IS NOT NULL) "
                "AND id NOT IN (SELECT item_id FROM seedbox_cleanups) ORDER BY finished_at",
                (ItemState.DONE.value,),
            ).fetchall()
        return [w for row in rows if (w := _waiting(row)) is not None]

    def record(self, cleaned: Cleaned) -> None:
        """Once per item: a second record of the same item keeps the first."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO seedbox_cleanups "
                "(item_id, seedbox, hash, at, reason, removed, data_deleted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cleaned.item_id, cleaned.seedbox, cleaned.hash, cleaned.at, cleaned.reason,
                 int(cleaned.removed), int(cleaned.data_deleted)),
            )  # fmt: skip

    def cleaned(self, item_id: str) -> Cleaned | None:
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT item_id, seedbox, hash, at, reason, removed, data_deleted "
                "FROM seedbox_cleanups WHERE item_id = ?",
                (item_id,),
            ).fetchone()
        if row is None:
            return None
        return Cleaned(
            item_id=row["item_id"],
            seedbox=row["seedbox"],
            hash=row["hash"],
            at=row["at"],
            reason=row["reason"],
            removed=bool(row["removed"]),
            data_deleted=bool(row["data_deleted"]),
        )


def _waiting(row: sqlite3.Row) -> Waiting | None:
    cleanup = PostPlan.from_json(row["plan"]).cleanup
    if cleanup is None:  # the query looked into the JSON already; mypy does not know
        return None
    return Waiting(row["id"], row["seedbox"], row["hash"], row["name"], cleanup)
