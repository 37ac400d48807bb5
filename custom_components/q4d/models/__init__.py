"""The bridge's MQTT payloads (protocol v1), parsed into typed models.

docs/protocol.md in the q4d repository is the contract. Parsing is lenient about
fields this integration does not use and strict about the ones it does: a payload
that lacks them raises `PayloadError` and is ignored by the coordinator.
"""

from .bridge import (
    BridgeState,
    BridgeStatus,
    ClientStats,
    CommandResult,
    Destination,
    DispatchState,
    LastCompleted,
    LastRejection,
    SeedboxState,
    SshLink,
)
from .item import ITEM_STATUSES, PROGRESS_FIELDS, Item
from .payload import PayloadError, UnsupportedVersion, decode

__all__ = [
    "ITEM_STATUSES",
    "PROGRESS_FIELDS",
    "BridgeState",
    "BridgeStatus",
    "ClientStats",
    "CommandResult",
    "Destination",
    "DispatchState",
    "Item",
    "LastCompleted",
    "LastRejection",
    "PayloadError",
    "SeedboxState",
    "SshLink",
    "UnsupportedVersion",
    "decode",
]
