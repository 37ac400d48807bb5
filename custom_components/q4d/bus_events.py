"""The data of the bus events fired from the bridge's events: `q4d_transfer_<kind>` for
the transfer events, `q4d_completion_<kind>` for the completions the bridge refused.
Pure: the coordinator adds the ids of the bridge, its entry and its devices."""

from __future__ import annotations

from typing import Any

from .models import Item


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def transfer_data(kind: str, item: Item, data: dict[str, Any]) -> dict[str, Any]:
    """A transfer event (`TRANSFER_EVENTS`) of an item."""
    event_data: dict[str, Any] = {
        "item_id": item.id,
        "name": item.name,
        "seedbox": item.seedbox,
        "category": item.category,
        "destination": item.destination,
        "destination_path": item.local_path,
        "size": item.size,
        "duration": item.duration if kind in ("completed", "failed") else None,
        "error": item.error_message if kind == "failed" else None,
        "error_code": item.error_code if kind == "failed" else None,
        "at": data.get("at"),
    }
    if kind == "queued":
        event_data["retry"] = data.get("retry") is True
    if kind == "completed":
        event_data["verified"] = data.get("verified")
        event_data["repaired_pieces"] = data.get("repaired_pieces")
        # after post-processing: what each step did
        event_data["steps"] = data.get("steps")
    if kind == "failed":
        event_data["step"] = data.get("step")  # failed in post-processing, payload home
    return event_data


def rejected_data(data: dict[str, Any]) -> dict[str, Any]:
    """A completion the bridge refused: whose (the seedbox the topic named, none for a
    topic that names none), the torrent's name if the event got that far, why."""
    return {
        "seedbox": _text(data, "seedbox"),
        "name": _text(data, "name"),
        "reason": _text(data, "reason"),
        "message": _text(data, "detail"),
        "topic": _text(data, "topic"),
        "at": data.get("at"),
    }


def duplicate_data(item: Item, data: dict[str, Any]) -> dict[str, Any]:
    """A completion of an item the bridge had already: which, and how it knew."""
    return {
        "item_id": item.id,
        "name": item.name,
        "seedbox": item.seedbox,
        "reason": _text(data, "reason"),
        "at": data.get("at"),
    }
