"""Items as table rows, and the stable item id."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from ..models import Item, ItemState, StepState, StepStatus
from ..postprocess.plan import PostPlan

ITEM_COLUMNS = (
    "id, event_id, seedbox, hash, name, remote_path, destination, local_path, category, tags, "
    "type_code, size, state, classic, priority, paused, bytes_done, attempts, last_error, "
    "error_code, received_at, started_at, finished_at, next_attempt_at, updated_at, engine, "
    "request_id, plan, steps, refetch"
)


def item_id_for(seedbox: str, info_hash: str | None, remote_path: str) -> str:
    """Stable id: the same payload from the same seedbox always maps to the same item."""
    key = f"{seedbox}\0{info_hash or ''}\0{remote_path}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def item_to_row(item: Item) -> tuple[Any, ...]:
    return (
        item.id,
        item.event_id,
        item.seedbox,
        item.hash,
        item.name,
        item.remote_path,
        item.destination,
        item.local_path,
        item.category,
        json.dumps(list(item.tags)),
        item.type_code,
        item.size,
        item.state.value,
        int(item.classic),
        item.priority,
        int(item.paused),
        item.bytes_done,
        item.attempts,
        item.last_error,
        item.error_code,
        item.received_at,
        item.started_at,
        item.finished_at,
        item.next_attempt_at,
        item.updated_at,
        item.engine,
        item.request_id,
        item.plan.to_json() if item.plan != PostPlan() else None,
        steps_json(item.steps),
        int(item.refetch),
    )


def row_to_item(row: sqlite3.Row) -> Item:
    return Item(
        id=row["id"],
        event_id=row["event_id"],
        seedbox=row["seedbox"],
        hash=row["hash"],
        name=row["name"],
        remote_path=row["remote_path"],
        destination=row["destination"],
        local_path=row["local_path"],
        category=row["category"],
        tags=tuple(json.loads(row["tags"])),
        type_code=row["type_code"],
        size=row["size"],
        state=ItemState(row["state"]),
        classic=bool(row["classic"]),
        priority=row["priority"],
        paused=bool(row["paused"]),
        bytes_done=row["bytes_done"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        error_code=row["error_code"],
        received_at=row["received_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
        updated_at=row["updated_at"],
        engine=row["engine"],
        request_id=row["request_id"],
        plan=PostPlan.from_json(row["plan"]),
        steps=tuple(
            StepStatus(s["name"], StepState(s["state"]), s["attempts"], s["detail"], s["at"])
            for s in json.loads(row["steps"])
        ),
        refetch=bool(row["refetch"]),
    )


def steps_json(steps: tuple[StepStatus, ...]) -> str:
    return json.dumps(
        [{"name": s.name, "state": s.state.value, "attempts": s.attempts, "detail": s.detail,
          "at": s.at} for s in steps]
    )  # fmt: skip
