"""What the bridge publishes: item payloads, seedbox labels (v1 and Q4D classic) and
command results. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..dispatch.requests import Request, RequestState
from ..models import CLASSIC_LABELS, Item, ItemState, Label
from .codec import PROTOCOL_VERSION, dumps


def label_payload(info_hash: str, label: Label, mode: str = "tag") -> bytes:
    return dumps({"v": PROTOCOL_VERSION, "hash": info_hash, "label": label.value, "mode": mode})


def classic_label_payload(info_hash: str, label: Label) -> bytes:
    return f"{info_hash}\t{CLASSIC_LABELS[label]}".encode()


def held(item: Item, queue_paused: bool) -> str | None:
    """Why an item that would start does not: its own pause ("item", which outlasts the
    queue's) or the queue-wide pause ("queue"); None otherwise."""
    if item.state not in (ItemState.QUEUED, ItemState.WAITING):
        return None
    if item.paused:
        return "item"
    return "queue" if queue_paused else None


def item_payload(item: Item, *, queue_paused: bool = False) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "id": item.id,
        "seedbox": item.seedbox,
        "hash": item.hash,
        "name": item.name,
        "remote_path": item.remote_path,
        "destination": item.destination,
        "local_path": item.local_path,
        "category": item.category,
        "tags": list(item.tags),
        "type": item.type_code,
        "size": item.size,
        "state": item.state.value,
        "engine": item.engine,
        "paused": item.paused,
        "held": held(item, queue_paused),
        "priority": item.priority,
        "bytes_done": item.bytes_done,
        "progress": item.progress,
        "rate": round(item.rate, 1),
        "eta": None if item.eta is None else round(item.eta, 1),
        "attempts": item.attempts,
        "error": None
        if item.last_error is None
        else {"code": item.error_code or "error", "message": item.last_error},
        "received_at": item.received_at,
        "started_at": item.started_at,
        "finished_at": item.finished_at,
        "next_attempt_at": item.next_attempt_at,
        "updated_at": item.updated_at,
        "request_id": item.request_id,
        # the step it is in, waits for or failed at; and every step once landed
        "step": None if item.step is None else item.step.name,
        "steps": [
            {
                "name": s.name,
                "state": s.state.value,
                "attempts": s.attempts,
                "detail": s.detail,
                "at": s.at,
            }
            for s in item.steps
        ],
    }


# a completed request waits for its seedbox's completion event: still "downloading", at 100 %
QUEUE_PHASE = {
    RequestState.REQUESTED: "requested",
    RequestState.ADDED: "requested",
    RequestState.DOWNLOADING: "downloading",
    RequestState.COMPLETED: "downloading",
}


def request_item_payload(request: Request) -> dict[str, Any]:
    """A request not yet in the queue, shown in it: an item payload whose state says
    where the torrent is before `queued` (docs/protocol.md, requests in the queue)."""
    rate = request.rate if request.state is RequestState.DOWNLOADING else 0.0
    left = None if request.size is None else max(0, request.size - request.bytes_done)
    return {
        "v": PROTOCOL_VERSION,
        "id": request.id,
        "seedbox": request.seedbox,
        "hash": request.info_hash,
        "name": request.name or request.info_hash,
        "remote_path": None,
        "destination": None,
        "local_path": None,
        "category": request.category,
        "tags": [],
        "type": None,
        "size": request.size,
        "state": QUEUE_PHASE.get(request.state, request.state.value),
        "engine": None,
        "paused": request.paused,
        "held": None,
        "priority": 0,
        "bytes_done": request.bytes_done,
        "progress": round(request.progress, 1),
        "rate": round(rate, 1),
        "eta": round(left / rate, 1) if rate > 0 and left is not None else None,
        "attempts": 0,
        "error": None
        if request.error_code is None
        else {"code": request.error_code, "message": request.error_message},
        "received_at": request.created_at,
        "started_at": None,
        "finished_at": request.updated_at if request.state is RequestState.FAILED else None,
        "next_attempt_at": None,
        "updated_at": request.updated_at,
        "request_id": request.id,
    }


class EncodedItems(NamedTuple):
    """A page of item payloads already encoded (mqtt/listing.py), answered as
    `{"items": [...], "total": n, "next_offset": n or null}`."""

    items: list[bytes]
    total: int  # the items listed, on every page
    next_offset: int | None  # where the next page starts; None on the last


def command_result(
    request_id: str | None,
    *,
    result: Any = None,
    error: tuple[str, str] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> bytes:
    """The answer to a command; `detail` joins an error's code and message (e.g. the
    `errors` and `fields` of an invalid configuration)."""
    if isinstance(result, EncodedItems) and error is None:
        # spliced in as they are: a long listing is not decoded and encoded again
        head = dumps({"v": PROTOCOL_VERSION, "id": request_id, "ok": True})
        tail = dumps({"total": result.total, "next_offset": result.next_offset})
        return b'%s,"result":{"items":[%s],%s}' % (head[:-1], b",".join(result.items), tail[1:])
    payload: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "ok": error is None}
    if error is None:
        payload["result"] = result
    else:
        payload["error"] = {**(detail or {}), "code": error[0], "message": error[1]}
    return dumps(payload)
