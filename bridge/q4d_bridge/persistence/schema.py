"""The store's tables, and the upgrade of databases written by older versions."""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    seedbox TEXT NOT NULL,
    hash TEXT,
    name TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    destination TEXT NOT NULL,
    local_path TEXT NOT NULL,
    category TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    type_code TEXT,
    size INTEGER,
    state TEXT NOT NULL,
    classic INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    error_code TEXT,
    received_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    next_attempt_at REAL,
    updated_at REAL NOT NULL,
    engine TEXT,
    request_id TEXT,
    plan TEXT,  -- its post-processing plan (postprocess/plan.py), fixed at intake
    steps TEXT NOT NULL DEFAULT '[]',  -- each post-processing step's state (lifecycle/post.py)
    refetch INTEGER NOT NULL DEFAULT 0  -- a done item fetched again on request
);
CREATE UNIQUE INDEX IF NOT EXISTS items_identity ON items (seedbox, ifnull(hash, ''), remote_path);
CREATE INDEX IF NOT EXISTS items_hash ON items (seedbox, hash);
CREATE INDEX IF NOT EXISTS items_state ON items (state);
CREATE TABLE IF NOT EXISTS seen_events (
    event_id TEXT PRIMARY KEY,
    seedbox TEXT NOT NULL,
    item_id TEXT,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS history_at ON history (at);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB
);
-- each seedbox's last rejected message (intake/intake.py), for the state snapshot:
-- kept whatever `history_retention` prunes from `rejected`
CREATE TABLE IF NOT EXISTS last_rejections (
    seedbox TEXT PRIMARY KEY,
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- torrents q4d was asked to add (dispatch/requests.py) and the decisions that placed them
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    source TEXT NOT NULL,
    category TEXT,
    name TEXT,
    info_hash TEXT NOT NULL,
    v1 TEXT,
    v2 TEXT,
    seedbox TEXT NOT NULL,
    size INTEGER,
    state TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    item_id TEXT,
    local_path TEXT,
    magnet TEXT,
    torrent_file BLOB,
    retracted INTEGER NOT NULL DEFAULT 0,
    name_key TEXT  -- the normalised name (dispatch/duplicates.py), to find duplicates by
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
CREATE INDEX IF NOT EXISTS requests_info_hash ON requests (info_hash);
CREATE INDEX IF NOT EXISTS requests_v1 ON requests (v1);
CREATE INDEX IF NOT EXISTS requests_v2_id ON requests (substr(v2, 1, 40));
CREATE INDEX IF NOT EXISTS requests_name_key ON requests (name_key);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
-- what the HTTP API changed about a torrent (persistence/api_marks.py), by the hash the
-- *arr apps know it by: its category and tags there, and when it was deleted there
CREATE TABLE IF NOT EXISTS api_marks (
    hash TEXT PRIMARY KEY,
    category TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    removed_at REAL
);
-- seedbox removals the HTTP API could not finish yet (persistence/api_removals.py)
CREATE TABLE IF NOT EXISTS api_removals (
    key TEXT PRIMARY KEY,
    seedbox TEXT NOT NULL,
    info_hash TEXT NOT NULL,
    delete_data INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_at REAL NOT NULL,
    last_error TEXT
);
-- torrents removed from a seedbox's client after their item was done, or found gone
-- there (postprocess/cleanup.py): one row per item, so none is looked at twice
CREATE TABLE IF NOT EXISTS seedbox_cleanups (
    item_id TEXT PRIMARY KEY,
    seedbox TEXT NOT NULL,
    hash TEXT NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL,  -- why: "ratio 2.03 ≥ 2", or "no longer on the seedbox"
    removed INTEGER NOT NULL,  -- 1: q4d removed it; 0: it was gone already
    data_deleted INTEGER NOT NULL  -- 1: its data went with it
);
-- the seedboxes' event numbers (intake/sequence.py)
CREATE TABLE IF NOT EXISTS sequence_streams (
    seedbox TEXT NOT NULL,
    stream TEXT NOT NULL,
    floor INTEGER,
    high INTEGER NOT NULL,
    lost INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (seedbox, stream)
);
-- completions an ignore rule left on the seedbox (persistence/ignored.py): one row per
-- torrent, so a resent event or a reconciliation pass does not count it again
CREATE TABLE IF NOT EXISTS ignored (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event_id TEXT NOT NULL,
    seedbox TEXT NOT NULL,
    hash TEXT,
    name TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    category TEXT,
    rule TEXT NOT NULL  -- rules.Routing.rule_name: rules[2], tracker example.org
);
CREATE UNIQUE INDEX IF NOT EXISTS ignored_key ON ignored (seedbox, ifnull(hash, ''), remote_path);
CREATE INDEX IF NOT EXISTS ignored_hash ON ignored (seedbox, hash);
-- the tracker rules added at runtime (persistence/tracker_rules.py), tried before the
-- config's rules; one per tracker domain
CREATE TABLE IF NOT EXISTS tracker_rules (
    tracker TEXT PRIMARY KEY,
    category TEXT,
    destination TEXT,
    ignore INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL
);
-- the configuration set from Home Assistant (persistence/runtime_config.py), merged
-- over the YAML file's; secrets are never here, only the paths of their files
CREATE TABLE IF NOT EXISTS runtime_config (
    section TEXT NOT NULL,
    id TEXT NOT NULL,
    value TEXT NOT NULL,  -- JSON: the entry as the YAML file would hold it
    updated_at REAL NOT NULL,
    PRIMARY KEY (section, id)
);
CREATE TABLE IF NOT EXISTS sequence_received (
    seedbox TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (seedbox, stream, seq)
) WITHOUT ROWID;
"""


def migrate(db: sqlite3.Connection) -> None:
    """Bring a database of any earlier version to SCHEMA_VERSION (idempotent)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 1:  # 0.1 databases: items had no per-rule engine
        db.execute("ALTER TABLE items ADD COLUMN engine TEXT")
    if 1 <= version < 3:  # before dispatch: items had no request
        db.execute("ALTER TABLE items ADD COLUMN request_id TEXT")
    if 1 <= version < 4:  # before post-processing
        db.execute("ALTER TABLE items ADD COLUMN plan TEXT")
        db.execute("ALTER TABLE items ADD COLUMN steps TEXT NOT NULL DEFAULT '[]'")
        db.execute("ALTER TABLE items ADD COLUMN refetch INTEGER NOT NULL DEFAULT 0")
    db.executescript(SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
