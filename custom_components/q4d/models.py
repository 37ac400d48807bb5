"""The bridge's MQTT payloads (protocol v1), parsed into typed models.

docs/protocol.md in the q4d repository is the contract. Parsing is lenient about
fields this integration does not use and strict about the ones it does: a payload
that lacks them raises `PayloadError` and is ignored by the coordinator.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .const import (
    ACTIVE_STATES,
    FINISHED_STATES,
    HOST_KEY_ERROR,
    ITEM_STATES,
    PROTOCOL_VERSION,
)


class PayloadError(ValueError):
    """A payload from the bridge that cannot be used."""


class UnsupportedVersion(PayloadError):
    """A payload of another protocol version than 1."""


def decode(payload: str | bytes | bytearray) -> dict[str, Any]:
    """Decode a JSON object payload of protocol version 1."""
    try:
        data = json.loads(payload)
    except ValueError as err:
        raise PayloadError(f"not JSON: {err}") from err
    if not isinstance(data, dict):
        raise PayloadError("not a JSON object")
    version = data.get("v")
    if version is not None and version != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"unsupported protocol version {version!r}")
    return data


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise PayloadError(f"{key!r} must be a string")
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: dict[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _float(data: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = _opt_float(data, key)
    return default if value is None else value


def _opt_float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _opt_bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(slots=True, kw_only=True)
class BridgeStatus:
    """`<prefix>/bridge/<id>/status` (retained, also the last will)."""

    online: bool
    bridge_id: str
    name: str
    version: str | None
    prefix: str | None
    seedboxes: list[str]

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> BridgeStatus:
        """Parse a status payload."""
        data = decode(payload)
        state = _str(data, "state")
        if state not in ("online", "offline"):
            raise PayloadError(f"unknown bridge state {state!r}")
        bridge_id = _str(data, "bridge_id")
        seedboxes = data.get("seedboxes")
        return cls(
            online=state == "online",
            bridge_id=bridge_id,
            name=_opt_str(data, "name") or bridge_id,
            version=_opt_str(data, "version"),
            prefix=_opt_str(data, "prefix"),
            seedboxes=[s for s in seedboxes if isinstance(s, str)]
            if isinstance(seedboxes, list)
            else [],
        )


@dataclass(slots=True, kw_only=True)
class ClientStats:
    """What the seedbox's torrent client reported (`seedboxes.<id>.client`)."""

    reachable: bool | None
    free_space: int | None
    active_downloads: int | None
    download_rate: float | None
    upload_rate: float | None
    torrents: int | None
    error: str | None
    checked_at: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientStats:
        """Parse the client object of a seedbox."""
        return cls(
            reachable=_opt_bool(data, "reachable"),
            free_space=_opt_int(data, "free_space"),
            active_downloads=_opt_int(data, "active_downloads"),
            download_rate=_opt_float(data, "download_rate"),
            upload_rate=_opt_float(data, "upload_rate"),
            torrents=_opt_int(data, "torrents"),
            error=_opt_str(data, "error"),
            checked_at=_opt_float(data, "checked_at"),
        )


@dataclass(slots=True, kw_only=True)
class SshLink:
    """The SSH link the bridge holds to a seedbox (`seedboxes.<id>.ssh`)."""

    connected: bool
    error: str | None
    checked_at: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SshLink:
        """Parse the ssh object of a seedbox."""
        return cls(
            connected=data.get("connected") is True,
            error=_opt_str(data, "error"),
            checked_at=_opt_float(data, "checked_at"),
        )

    @property
    def host_key_mismatch(self) -> bool:
        """Whether the last connection attempt was refused for the seedbox's host key."""
        return self.error is not None and self.error.startswith(f"{HOST_KEY_ERROR}:")


@dataclass(slots=True, kw_only=True)
class SeedboxState:
    """One seedbox in the state snapshot."""

    id: str
    name: str
    breaker_open: bool
    breaker_until: float | None
    consecutive_failures: int
    queued: int
    active: int
    waiting: int
    failed: int
    rate: float
    max_concurrent: int | None
    client: ClientStats | None
    ssh: SshLink | None

    @classmethod
    def from_dict(cls, seedbox_id: str, data: dict[str, Any], limit: int | None) -> SeedboxState:
        """Parse one entry of `seedboxes` (`client` and `ssh` are missing from older
        bridges; older bridges call the client `node`)."""
        client = data.get("client", data.get("node"))
        ssh = data.get("ssh")
        return cls(
            id=seedbox_id,
            name=_opt_str(data, "name") or seedbox_id,
            breaker_open=data.get("breaker") == "open",
            breaker_until=_opt_float(data, "breaker_until"),
            consecutive_failures=_int(data, "consecutive_failures"),
            queued=_int(data, "queued"),
            active=_int(data, "active"),
            waiting=_int(data, "waiting"),
            failed=_int(data, "failed"),
            rate=_float(data, "rate"),
            max_concurrent=limit,
            client=ClientStats.from_dict(client) if isinstance(client, dict) else None,
            ssh=SshLink.from_dict(ssh) if isinstance(ssh, dict) else None,
        )

    def breaker_open_at(self, now: float) -> bool:
        """Whether the circuit breaker keeps the seedbox's items from starting at `now`.

        The bridge reports `open` until something else makes it publish its state
        again, so an expired cool-down (`breaker_until` in the past) counts as closed.
        """
        return self.breaker_open and (self.breaker_until is None or self.breaker_until > now)

    @property
    def breaker_active(self) -> bool:
        """Whether the circuit breaker is open now."""
        return self.breaker_open_at(time.time())


@dataclass(slots=True, kw_only=True)
class Destination:
    """One destination of the state snapshot (`destinations.<name>`)."""

    name: str
    free_space: int | None
    min_free_space: int | None

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Destination:
        """Parse one entry of `destinations`."""
        return cls(
            name=name,
            free_space=_opt_int(data, "free_space"),
            min_free_space=_opt_int(data, "min_free_space"),
        )

    @property
    def short_of_space(self) -> bool:
        """Whether less space is free than the margin every download must leave."""
        return (
            self.free_space is not None
            and self.min_free_space is not None
            and self.free_space < self.min_free_space
        )


@dataclass(slots=True, kw_only=True)
class LastCompleted:
    """The `done` item with the latest `finished_at`."""

    id: str
    name: str
    at: float | None


@dataclass(slots=True, kw_only=True)
class BridgeState:
    """`<prefix>/bridge/<id>/state` (retained, at most once per second)."""

    paused: bool
    counts: dict[str, int]
    active: int
    rate: float
    totals: dict[str, int]
    max_concurrent: int | None
    bandwidth_limit: int | None
    seedboxes: dict[str, SeedboxState]
    destinations: dict[str, Destination]
    last_completed: LastCompleted | None
    updated_at: float | None

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> BridgeState:
        """Parse a state snapshot."""
        data = decode(payload)
        counts_raw = data.get("counts")
        if not isinstance(counts_raw, dict):
            raise PayloadError("'counts' must be an object")
        counts = {state: _int(counts_raw, state) for state in ITEM_STATES}
        totals_raw = _obj(data, "totals")
        limits = _obj(data, "limits")
        per_seedbox = _obj(limits, "per_seedbox")
        seedboxes_raw = data.get("seedboxes")
        if not isinstance(seedboxes_raw, dict):
            raise PayloadError("'seedboxes' must be an object")
        destinations = _obj(data, "destinations")  # missing from older bridges
        last = data.get("last_completed")
        return cls(
            paused=data.get("paused") is True,
            counts=counts,
            active=_int(data, "active", sum(counts[s] for s in ACTIVE_STATES)),
            rate=_float(data, "rate"),
            totals={key: _int(totals_raw, key) for key in totals_raw},
            max_concurrent=_opt_int(limits, "max_concurrent"),
            bandwidth_limit=_opt_int(limits, "bandwidth_limit"),
            seedboxes={
                sb: SeedboxState.from_dict(sb, value, _opt_int(per_seedbox, sb))
                for sb, value in seedboxes_raw.items()
                if isinstance(value, dict)
            },
            destinations={
                name: Destination.from_dict(name, value)
                for name, value in destinations.items()
                if isinstance(value, dict)
            },
            last_completed=LastCompleted(
                id=_str(last, "id"), name=_str(last, "name"), at=_opt_float(last, "at")
            )
            if isinstance(last, dict)
            else None,
            updated_at=_opt_float(data, "updated_at"),
        )

    @property
    def total_items(self) -> int:
        """Number of items the bridge holds (all states)."""
        return sum(self.counts.values())


@dataclass(slots=True, kw_only=True)
class Item:
    """`<prefix>/bridge/<id>/item/<item_id>` (retained; empty payload = removed)."""

    id: str
    seedbox: str
    name: str
    state: str
    destination: str | None
    local_path: str | None
    remote_path: str | None
    category: str | None
    tags: list[str]
    size: int | None
    bytes_done: int | None
    progress: float
    rate: float
    eta: float | None
    attempts: int
    priority: int
    paused: bool
    error_code: str | None
    error_message: str | None
    received_at: float | None
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None
    updated_at: float | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        """Parse an item payload (also found in events and get_queue results)."""
        state = _str(data, "state")
        if state not in ITEM_STATES:
            raise PayloadError(f"unknown item state {state!r}")
        error = data.get("error")
        tags = data.get("tags")
        return cls(
            id=_str(data, "id"),
            seedbox=_str(data, "seedbox"),
            name=_str(data, "name"),
            state=state,
            destination=_opt_str(data, "destination"),
            local_path=_opt_str(data, "local_path"),
            remote_path=_opt_str(data, "remote_path"),
            category=_opt_str(data, "category"),
            tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
            size=_opt_int(data, "size"),
            bytes_done=_opt_int(data, "bytes_done"),
            progress=_float(data, "progress"),
            rate=_float(data, "rate"),
            eta=_opt_float(data, "eta"),
            attempts=_int(data, "attempts"),
            priority=_int(data, "priority"),
            paused=data.get("paused") is True,
            error_code=_opt_str(error, "code") if isinstance(error, dict) else None,
            error_message=_opt_str(error, "message") if isinstance(error, dict) else None,
            received_at=_opt_float(data, "received_at"),
            started_at=_opt_float(data, "started_at"),
            finished_at=_opt_float(data, "finished_at"),
            next_attempt_at=_opt_float(data, "next_attempt_at"),
            updated_at=_opt_float(data, "updated_at"),
            raw=data,
        )

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> Item:
        """Parse a retained item payload."""
        return cls.from_dict(decode(payload))

    @property
    def finished(self) -> bool:
        """Whether the item reached done, failed or cancelled."""
        return self.state in FINISHED_STATES

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the latest attempt to the end."""
        if self.started_at is None or self.finished_at is None:
            return None
        return round(max(0.0, self.finished_at - self.started_at), 1)

    def summary(self) -> dict[str, Any]:
        """The item as returned by the get_queue action."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.state,
            "progress": self.progress,
            "rate": self.rate,
            "eta": self.eta,
            "seedbox": self.seedbox,
            "destination": self.destination,
            "destination_path": self.local_path,
            "category": self.category,
            "size": self.size,
            "priority": self.priority,
            "paused": self.paused,
            "attempts": self.attempts,
            "error": None
            if self.error_code is None and self.error_message is None
            else {"code": self.error_code, "message": self.error_message},
            "received_at": self.received_at,
            "finished_at": self.finished_at,
        }


@dataclass(slots=True, kw_only=True)
class CommandResult:
    """`<prefix>/bridge/<id>/command/result`."""

    id: str | None
    ok: bool
    result: Any
    error_code: str | None
    error_message: str | None

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> CommandResult:
        """Parse a command result."""
        data = decode(payload)
        ok = data.get("ok")
        if not isinstance(ok, bool):
            raise PayloadError("'ok' must be a boolean")
        error = _obj(data, "error")
        return cls(
            id=_opt_str(data, "id"),
            ok=ok,
            result=data.get("result"),
            error_code=_opt_str(error, "code"),
            error_message=_opt_str(error, "message"),
        )
