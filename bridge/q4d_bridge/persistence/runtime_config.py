"""The runtime configuration layer in the store (config/runtime.py): one row per entry,
and a revision that every change moves on, so Home Assistant can tell what it saw."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..config.runtime import Layer, empty_layer
from .store import Store

REVISION_KEY = "config_revision"  # in the settings table


def load_layer(db: sqlite3.Connection) -> tuple[int, Layer]:
    """The revision and every stored entry (from the bridge's store or a read-only
    connection)."""
    layer = empty_layer()
    for row in db.execute("SELECT section, id, value FROM runtime_config ORDER BY section, id"):
        layer.setdefault(row[0], {})[row[1]] = json.loads(row[2])
    revision = db.execute("SELECT value FROM settings WHERE key = ?", (REVISION_KEY,)).fetchone()
    return (0 if revision is None else int(json.loads(revision[0]))), layer


def read_layer(data_dir: Path) -> Layer:
    """The layer a starting bridge (or the CLI) merges: none before the first start, nor
    in a store written by a version without runtime configuration."""
    path = data_dir / "q4d.sqlite3"
    if not path.exists():
        return empty_layer()
    db = Store.open_readonly(path)
    try:
        return load_layer(db)[1]
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):
            return empty_layer()
        raise
    finally:
        db.close()


def _bump(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (REVISION_KEY,)).fetchone()
    revision = (0 if row is None else int(json.loads(row[0]))) + 1
    db.execute(
        "INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (REVISION_KEY, json.dumps(revision)),
    )
    return revision


def save_entry(store: Store, section: str, entry_id: str, value: Any) -> int:
    """Store the entry (added or replaced); the new revision."""
    with store.transaction() as db:
        db.execute(
            "INSERT INTO runtime_config (section, id, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(section, id) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (section, entry_id, json.dumps(value), time.time()),
        )
        return _bump(db)


def delete_entry(store: Store, section: str, entry_id: str) -> int:
    """Remove the entry; the new revision."""
    with store.transaction() as db:
        db.execute("DELETE FROM runtime_config WHERE section = ? AND id = ?", (section, entry_id))
        return _bump(db)
