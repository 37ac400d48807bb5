"""The tracker rules added at runtime, kept in the store so they outlive a restart."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..tracker_rules import TrackerRule
from .store import Store


def load_tracker_rules(db: sqlite3.Connection) -> list[TrackerRule]:
    """Every stored rule, oldest first: from the bridge's store (in a transaction of its
    own) or a read-only connection (the CLI's dry run)."""
    rows = db.execute(
        "SELECT tracker, category, destination, ignore FROM tracker_rules ORDER BY added_at"
    ).fetchall()
    return [
        TrackerRule(r["tracker"], r["category"], r["destination"], bool(r["ignore"])) for r in rows
    ]


def read_stored_tracker_rules(data_dir: Path) -> list[TrackerRule]:
    """The stored rules, read-only (the bridge may be running): for the CLI's dry run and
    export; none when the bridge never ran here."""
    path = data_dir / "q4d.sqlite3"
    if not path.exists():
        return []
    db = Store.open_readonly(path)
    try:
        return load_tracker_rules(db)
    except sqlite3.OperationalError:
        return []  # a store from before tracker rules: there are none
    finally:
        db.close()


def save_tracker_rule(store: Store, rule: TrackerRule) -> bool:
    """Store the rule for its domain; True if it replaced one (which keeps its place)."""
    with store.transaction() as db:
        replaced = db.execute(
            "UPDATE tracker_rules SET category = ?, destination = ?, ignore = ? WHERE tracker = ?",
            (rule.category, rule.destination, int(rule.ignore), rule.tracker),
        ).rowcount
        if not replaced:
            db.execute(
                "INSERT INTO tracker_rules (tracker, category, destination, ignore, added_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (rule.tracker, rule.category, rule.destination, int(rule.ignore), time.time()),
            )
    return bool(replaced)


def delete_tracker_rule(store: Store, tracker: str) -> bool:
    """False if there was no rule for that domain."""
    with store.transaction() as db:
        return bool(db.execute("DELETE FROM tracker_rules WHERE tracker = ?", (tracker,)).rowcount)
