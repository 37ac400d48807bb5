"""Items as table rows, and the stable item id."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
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


def _interned(value: str | None) -> str | None:
    """One copy of each of the few seedbox, destination, category… names, rather than
    one per item in a history of thousands."""
    return None if value is None else sys.intern(value)


def row_to_item(row: sqlite3.Row | tuple[Any, ...]) -> Item:
    """An item from its ITEM_COLUMNS, by position (a bulk load reads plain tuples)."""
    (
        id_, event_id, seedbox, info_hash, name, remote_path, destination, local_path,
        category, tags, type_code, size, state, classic, priority, paused, bytes_done,
        attempts, last_error, error_code, received_at, started_at, finished_at,
        next_attempt_at, updated_at, engine, request_id, plan, steps, refetch,
    ) = row  # fmt: skip
    return Item(
        id=id_,
        event_id=event_id,
        seedbox=sys.intern(seedbox),
        hash=info_hash,
        name=name,
        remote_path=remote_path,
        destination=sys.intern(destination),
        local_path=local_path,
        category=_interned(category),
        tags=() if tags == "[]" else tuple(json.loads(tags)),
        type_code=_interned(type_code),
        size=size,
        state=ItemState(state),
        classic=bool(classic),
        priority=priority,
        paused=bool(paused),
        bytes_done=bytes_done,
        attempts=attempts,
        last_error=last_error,
        error_code=_interned(error_code),
        received_at=received_at,
        started_at=started_at,
        finished_at=finished_at,
        next_attempt_at=next_attempt_at,
        updated_at=updated_at,
        engine=_interned(engine),
        request_id=request_id,
        plan=PostPlan.from_json(plan),
        steps=()
        if steps == "[]"
        else tuple(
            StepStatus(s["name"], StepState(s["state"]), s["attempts"], s["detail"], s["at"])
            for s in json.loads(steps)
        ),
        refetch=bool(refetch),
    )


def steps_json(steps: tuple[StepStatus, ...]) -> str:
    return json.dumps(
        [{"name": s.name, "state": s.state.value, "attempts": s.attempts, "detail": s.detail,
          "at": s.at} for s in steps]
    )  # fmt: skip
