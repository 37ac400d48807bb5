"""Bridge payloads (protocol v1) for the q4d integration tests."""

from __future__ import annotations

import json
from typing import Any

BRIDGE_ID = "home"
PREFIX = "q4d"
BASE = f"{PREFIX}/bridge/{BRIDGE_ID}"
STATUS_TOPIC = f"{BASE}/status"
STATE_TOPIC = f"{BASE}/state"
EVENT_TOPIC = f"{BASE}/event"
COMMAND_TOPIC = f"{BASE}/command"
RESULT_TOPIC = f"{BASE}/command/result"

ITEM_1 = "483d7eec632f7436"
ITEM_2 = "8afaca10a21c7251"
ITEM_3 = "0123456789abcdef"
REQUEST_1 = "5eed5eed5eed5eed"
NOW = 1700000000.0
GIB = 1 << 30


def item_topic(item_id: str) -> str:
    """Topic of one item."""
    return f"{BASE}/item/{item_id}"


def dumps(payload: dict[str, Any]) -> str:
    """Compact JSON, as the bridge sends it."""
    return json.dumps(payload, separators=(",", ":"))


def status(state: str = "online", **overrides: Any) -> str:
    """A status payload."""
    payload: dict[str, Any] = {
        "v": 1,
        "state": state,
        "version": "0.1.0",
        "name": "Home media bridge",
        "bridge_id": BRIDGE_ID,
        "prefix": PREFIX,
        "seedboxes": ["seedbox1", "seedbox2"],
    }
    payload.update(overrides)
    return dumps(payload)


def dispatch(**overrides: Any) -> dict[str, Any]:
    """How the bridge scored a client for new torrents."""
    payload: dict[str, Any] = {
        "enabled": True,
        "score": 3.254,
        "eligible": True,
        "reason_code": "eligible",
        "reason": "eligible",
    }
    payload.update(overrides)
    return payload


def client_stats(**overrides: Any) -> dict[str, Any]:
    """A seedbox's torrent-client stats."""
    payload: dict[str, Any] = {
        "type": "qbittorrent",
        "version": "5.0.4",
        "reachable": True,
        "free_space": 512_000_000_000,
        "active_downloads": 2,
        "download_rate": 4_194_304,
        "upload_rate": 1_048_576,
        "torrents": 42,
        "error": None,
        "checked_at": NOW,
        "dispatch": dispatch(),
    }
    payload.update(overrides)
    return payload


def ssh(**overrides: Any) -> dict[str, Any]:
    """The SSH link the bridge holds to a seedbox."""
    payload: dict[str, Any] = {"connected": True, "error": None, "checked_at": NOW - 1000}
    payload.update(overrides)
    return payload


def seedbox(
    name: str, *, with_client: bool = True, with_ssh: bool = True, **overrides: Any
) -> dict[str, Any]:
    """One seedbox of the state snapshot."""
    payload: dict[str, Any] = {
        "name": name,
        "breaker": "closed",
        "breaker_until": None,
        "consecutive_failures": 0,
        "queued": 1,
        "active": 1,
        "waiting": 0,
        "failed": 1,
        "rate": 52428800.0,
        "client": client_stats() if with_client else None,
        "ssh": ssh() if with_ssh else None,
        "lost_events": 0,
        "ignored": 0,
        "rejected": 0,
        "duplicates": 0,
        "last_rejection": None,
    }
    payload.update(overrides)
    return payload


def last_rejection(**overrides: Any) -> dict[str, Any]:
    """A seedbox's last rejected completion."""
    payload: dict[str, Any] = {
        "reason": "unsafe_path",
        "message": "remote path '/etc/passwd' is not inside the seedbox roots",
        "at": NOW - 300,
    }
    payload.update(overrides)
    return payload


def destination(free_space: int | None, min_free_space: int = GIB) -> dict[str, Any]:
    """One destination of the state snapshot."""
    return {"free_space": free_space, "min_free_space": min_free_space}


def state_dict(**overrides: Any) -> dict[str, Any]:
    """A state snapshot as a dict."""
    payload: dict[str, Any] = {
        "v": 1,
        "bridge_id": BRIDGE_ID,
        "paused": False,
        "counts": {
            "queued": 1,
            "transferring": 1,
            "verifying": 0,
            "done": 0,
            "waiting": 0,
            "failed": 1,
            "cancelled": 0,
            "requested": 0,
            "downloading": 0,
        },
        "active": 1,
        "rate": 52428800.0,
        "totals": {
            "received": 3,
            "completed": 1,
            "failed": 1,
            "rejected": 1,
            "duplicates": 1,
            "ignored": 2,
            "bytes_transferred": 1500000000,
        },
        "limits": {
            "max_concurrent": 3,
            "bandwidth_limit": 10485760,
            "per_seedbox": {"seedbox1": 2, "seedbox2": 1},
        },
        "seedboxes": {
            "seedbox1": seedbox(
                "My seedbox", rejected=2, duplicates=1, last_rejection=last_rejection()
            ),
            "seedbox2": seedbox(
                "Second seedbox",
                with_client=False,
                with_ssh=False,
                queued=0,
                active=0,
                failed=0,
                rate=0.0,
            ),
        },
        "destinations": {
            "tv": destination(3_298_534_883_328),
            "movies": destination(None),
        },
        "last_completed": {"id": "ffffffffffffffff", "name": "Film.2020.mkv", "at": NOW - 600},
        "updated_at": NOW,
    }
    payload.update(overrides)
    return payload


def state(**overrides: Any) -> str:
    """A state snapshot payload."""
    return dumps(state_dict(**overrides))


def item_dict(item_id: str = ITEM_1, state: str = "queued", **overrides: Any) -> dict[str, Any]:
    """An item payload as a dict."""
    payload: dict[str, Any] = {
        "v": 1,
        "id": item_id,
        "seedbox": "seedbox1",
        "hash": "0123456789abcdef0123456789abcdef01234567",
        "name": "Show.S01E01.mkv",
        "remote_path": "/home/me/downloads/Show.S01E01.mkv",
        "destination": "tv",
        "local_path": "/media/tv/Show.S01E01.mkv",
        "category": "tv-sonarr",
        "tags": ["hd"],
        "type": "T",
        "size": 1500000000,
        "state": state,
        "engine": "lftp",
        "paused": False,
        "priority": 0,
        "bytes_done": 0,
        "progress": 0.0,
        "rate": 0.0,
        "eta": None,
        "attempts": 0,
        "error": None,
        "received_at": NOW,
        "started_at": None,
        "finished_at": None,
        "next_attempt_at": None,
        "updated_at": NOW,
        "request_id": None,
    }
    payload.update(overrides)
    return payload


def item(item_id: str = ITEM_1, state: str = "queued", **overrides: Any) -> str:
    """An item payload."""
    return dumps(item_dict(item_id, state, **overrides))


def transferring(item_id: str = ITEM_1, **overrides: Any) -> str:
    """An item in the middle of its transfer."""
    values: dict[str, Any] = {
        "bytes_done": 524288000,
        "progress": 35.0,
        "rate": 52428800.0,
        "eta": 18.6,
        "attempts": 1,
        "started_at": NOW + 2,
        "updated_at": NOW + 13,
    }
    values.update(overrides)
    return item(item_id, "transferring", **values)


def request_item(request_id: str = REQUEST_1, state: str = "downloading", **overrides: Any) -> str:
    """A torrent request not in the queue yet, as the bridge publishes it on its item topic."""
    values: dict[str, Any] = {
        "hash": "fedcba9876543210fedcba9876543210fedcba98",
        "name": "Show.S01E02.mkv",
        "remote_path": None,
        "destination": None,
        "local_path": None,
        "tags": [],
        "type": None,
        "engine": None,
        "bytes_done": 750000000,
        "progress": 50.0,
        "rate": 4194304.0,
        "eta": 178.8,
        "request_id": request_id,
    }
    values.update(overrides)
    return item(request_id, state, **values)


def event(kind: str, item_payload: dict[str, Any] | None, at: float = NOW, **extra: Any) -> str:
    """An event payload."""
    payload: dict[str, Any] = {"v": 1, "event": kind, "at": at}
    if item_payload is not None:
        payload["item"] = item_payload
    payload.update(extra)
    return dumps(payload)
