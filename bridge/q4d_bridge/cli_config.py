"""`q4d-bridge config export`: the effective configuration — the YAML file, the
environment over it and the entries set from Home Assistant — as one YAML file, secrets
redacted (their files named, never read), to move back to a file-based install.

`q4d-bridge config remove SECTION ID`: a runtime entry removed from the store of a
stopped bridge — the way out when an entry the file no longer fits stops it starting
(a running bridge is asked over MQTT instead: config_remove)."""

from __future__ import annotations

import argparse
import sys
import time

import yaml

from .config.loader import ConfigError
from .config.runtime import REDACTED, SECTIONS, redacted, redacted_keys
from .config.secret_files import SecretFiles
from .config.source import ConfigSource
from .datadir import DataDirBusy, DataDirLock
from .persistence.runtime_config import delete_entry, load_layer
from .persistence.store import Store
from .persistence.tracker_rules import read_stored_tracker_rules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("export", "remove"))
    p.add_argument("section", nargs="?", choices=SECTIONS, help="remove: the entry's section")
    p.add_argument("id", nargs="?", help="remove: the entry's id")


def export(source: ConfigSource) -> str:
    layer = source.stored_layer()
    raw = source.merged(layer)
    data_dir = source.data_dir()
    stored = read_stored_tracker_rules(data_dir) if data_dir is not None else []
    # The stored tracker rules after the file's (whose domains win, as in the bridge).
    in_file = {r.get("tracker") for r in raw.get("tracker_rules", []) if isinstance(r, dict)}
    added = [r.as_config() for r in stored if r.tracker not in in_file]
    if added:
        raw["tracker_rules"] = [*raw.get("tracker_rules", []), *added]
    runtime = sum(len(entries) for entries in layer.values())
    lines = [
        f"# q4d-bridge configuration exported {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"# from {source.path} and the environment, with {runtime} entry(ies) set from Home",
        f"# Assistant and {len(added)} tracker rule(s) added at runtime. Secrets stay in the",
        "# files *_file, key and known_hosts name.",
    ]
    hidden = redacted_keys(raw)
    if hidden:
        lines.append(f"# Written as {REDACTED!r}, to fill in (or use <key>_file):")
        lines += [f"#   {key}" for key in hidden]
    return "\n".join(lines) + "\n" + yaml.safe_dump(redacted(raw), sort_keys=False)


def remove(source: ConfigSource, section: str, entry_id: str) -> int:
    data_dir = source.data_dir()
    if data_dir is None or not (data_dir / "q4d.sqlite3").exists():
        print("q4d-bridge config remove: no store, so no runtime entries", file=sys.stderr)
        return 1
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirBusy as err:
        print(f"q4d-bridge config remove: {err}: remove it from Home Assistant, or stop the "
              "bridge first", file=sys.stderr)  # fmt: skip
        return 1
    try:
        store = Store(data_dir / "q4d.sqlite3")
        try:
            with store.transaction() as db:
                known = entry_id in load_layer(db)[1].get(section, {})
            if not known:
                print(f"q4d-bridge config remove: no runtime entry {section}.{entry_id}",
                      file=sys.stderr)  # fmt: skip
                return 1
            revision = delete_entry(store, section, entry_id)
        finally:
            store.close()
        SecretFiles.remove(SecretFiles(data_dir).managed(section, entry_id))
    finally:
        lock.release()
    print(f"removed {section}.{entry_id} (revision {revision})")
    return 0


def config_command(source: ConfigSource, args: argparse.Namespace) -> int:
    if args.action == "remove":
        if not args.section or not args.id:
            print("q4d-bridge config remove: give the section and the id", file=sys.stderr)
            return 2
        return remove(source, args.section, args.id)
    try:
        source.load()  # an export that check-config would refuse helps no one
    except ConfigError as err:
        print(f"q4d-bridge: invalid configuration in {source.path}:", file=sys.stderr)
        for line in err.errors:
            print(f"  - {line}", file=sys.stderr)
        return 1
    sys.stdout.write(export(source))
    return 0
