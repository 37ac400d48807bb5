"""Constants for the q4d integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "q4d"
LOGGER = logging.getLogger(__package__)

MANUFACTURER: Final = "q4d"

CONF_BRIDGE_ID: Final = "bridge_id"
CONF_PREFIX: Final = "prefix"
CONF_RETENTION: Final = "finished_retention"
CONF_ITEM_ENTITIES: Final = "item_entities"

DEFAULT_PREFIX: Final = "q4d"
DEFAULT_RETENTION: Final = 60  # minutes a finished item keeps its entities
DEFAULT_ITEM_ENTITIES: Final = False  # opt-in: the live card shows every item
MAX_RETENTION: Final = 7 * 24 * 60

# The bridge answers commands in milliseconds; a rescan waits for every torrent client,
# adding a torrent may wait for its .torrent file's download and for the client.
COMMAND_TIMEOUT: Final = 10.0
RESCAN_TIMEOUT: Final = 60.0
DISPATCH_TIMEOUT: Final = 60.0
# Time the config flow waits for the bridge's retained status message.
STATUS_TIMEOUT: Final = 5.0
# Entities write their state at most once per this many seconds.
WRITE_INTERVAL: Final = 1.0
# How often finished items are checked against the retention.
RETENTION_SWEEP_INTERVAL: Final = 30.0
# A bridge offline for longer than this raises a repair issue.
OFFLINE_ISSUE_AFTER: Final = 10 * 60.0
# Considered in sync with the bridge's retained items this long after the first state.
SYNC_GRACE: Final = 60.0

PROTOCOL_VERSION: Final = 1

ITEM_STATES: Final = (
    "queued",
    "transferring",
    "verifying",
    "processing",
    "waiting",
    "done",
    "failed",
    "cancelled",
)
# Torrent requests (q4d.add_torrent) not in the queue yet: the bridge publishes each as
# an item under the request's id until its download becomes a queue item.
REQUEST_STATES: Final = ("requested", "downloading")
FINISHED_STATES: Final = frozenset({"done", "failed", "cancelled"})
ACTIVE_STATES: Final = frozenset({"transferring", "verifying"})

# Why the bridge would or would not send a new torrent to a seedbox's client.
DISPATCH_REASONS: Final = (
    "eligible",
    "disabled",
    "no_client",
    "unreachable",
    "below_min_free",
    "max_downloads",
    "low_score",
)

TRANSFER_EVENTS: Final = ("queued", "started", "completed", "failed")
EVENT_TRANSFER_PREFIX: Final = "q4d_transfer_"
# Completions the bridge refused: its `rejected` and `duplicate` events, fired on the
# bus as q4d_<kind>, event types of the event entity and device triggers.
COMPLETION_EVENTS: Final = ("completion_rejected", "completion_duplicate")
# This many rejections of one seedbox within the window raise a repair issue.
REJECTIONS_ISSUE_COUNT: Final = 5
REJECTIONS_ISSUE_WINDOW: Final = 3600.0

# Bridge error codes that raise repair issues.
SPACE_ERROR_CODES: Final = frozenset({"insufficient_space", "no_space"})
HOST_KEY_ERROR: Final = "host_key_mismatch"

# Keys of the per-item entities, by platform (used to remove them from the registry).
ITEM_SENSOR_KEYS: Final = ("status", "progress", "rate", "eta")
ITEM_BUTTON_KEYS: Final = ("retry", "cancel")

ATTR_CATEGORY: Final = "category"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_DESTINATION: Final = "destination"
ATTR_IGNORE: Final = "ignore"
ATTR_ITEM_ID: Final = "item_id"
ATTR_LIMIT: Final = "limit"
ATTR_MAGNET: Final = "magnet"
ATTR_OFFSET: Final = "offset"
ATTR_PAUSED: Final = "paused"
ATTR_PRIORITY: Final = "priority"
ATTR_FORCE: Final = "force"
ATTR_SEEDBOX: Final = "seedbox"
ATTR_STATES: Final = "states"
ATTR_TRACKER: Final = "tracker"
ATTR_URL: Final = "url"
