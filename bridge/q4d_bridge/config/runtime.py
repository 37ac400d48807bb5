"""The runtime configuration layer (docs/configuration.md, "Runtime configuration"):
seedboxes, destinations, rules, Sonarr/Radarr instances (`arr`), home torrent clients
(`home_clients`) and the dispatch settings set from Home Assistant, kept in the store,
merged into the YAML file's raw mapping before the loader's schema and cross-checks
run, so an entry set at runtime is checked by exactly the code `check-config` runs.

Pure: the model, the merge (ids the YAML defines win), redaction, the entries as Home
Assistant is shown them, and the loader's `path: reason` lines mapped back to the keys
inside one entry. runtime_entry.py turns an entry as sent into the entry as stored."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping
from typing import Any

import voluptuous as vol

from .schema import DISPATCH_SCHEMA

SECTIONS = ("seedboxes", "destinations", "rules", "arr", "home_clients", "dispatch")
# Sections the YAML file keeps as a mapping by name (seedboxes and rules are lists of
# entries with ids).
NAMED = ("destinations", "arr", "home_clients")
# Sections that are one mapping in the YAML file: their one entry's id is the section's.
SINGLETONS = ("dispatch",)
REDACTED = "***"
# Values never shown: in answers, the retained config topic, `config export`, logs.
SECRET_KEYS = frozenset({"password", "passphrase", "api_key", "admin_key", "private_key"})
# An error on the entry as a whole (not one of its keys), for a form's general error.
WHOLE_ENTRY = "base"

# section -> id -> the entry as stored: what a YAML file would hold (a rule with its
# `order`), secrets only as the paths of their files.
Layer = dict[str, dict[str, Any]]


def empty_layer() -> Layer:
    return {section: {} for section in SECTIONS}


def entry_name(section: str, entry_id: str) -> str:
    """How messages name an entry: `rules.films`; a singleton by its section alone."""
    return section if section in SINGLETONS else f"{section}.{entry_id}"


def yaml_ids(base: Mapping[str, Any]) -> dict[str, list[str]]:
    """The ids each section has in the YAML file (with the environment over it): those
    entries are read-only from Home Assistant."""
    seedboxes = base.get("seedboxes")
    rules = base.get("rules")
    named = {section: base.get(section) for section in NAMED}
    return {
        **{section: [section] if section in base else [] for section in SINGLETONS},
        **{
            section: [str(k) for k in entries] if isinstance(entries, dict) else []
            for section, entries in named.items()
        },
        "seedboxes": [
            sb["id"] for sb in seedboxes if isinstance(sb, dict) and isinstance(sb.get("id"), str)
        ]
        if isinstance(seedboxes, list)
        else [],
        "rules": [r["id"] for r in rules if isinstance(r, dict) and isinstance(r.get("id"), str)]
        if isinstance(rules, list)
        else [],
    }


def rule_order(item: tuple[str, Mapping[str, Any]]) -> tuple[int, str]:
    """Runtime rules are tried by `order`, ties by id."""
    rule_id, value = item
    return int(value.get("order", 0)), rule_id


def merge(base: Mapping[str, Any], layer: Layer) -> tuple[dict[str, Any], list[str]]:
    """The effective raw mapping (a copy): runtime seedboxes after the YAML's, runtime
    destinations (arr instances, home clients) beside them, runtime rules (by order)
    BEFORE the YAML's, the dispatch settings where the YAML has none. Also the
    runtime entries the YAML now defines itself ("seedboxes.sb1"): the YAML wins (a
    configuration exported to the file and then edited there)."""
    raw = copy.deepcopy(dict(base))
    taken = yaml_ids(base)
    shadowed: list[str] = []

    def fresh(section: str) -> list[tuple[str, Any]]:
        entries = layer.get(section, {})
        for entry_id in entries:
            if entry_id in taken[section]:
                shadowed.append(entry_name(section, entry_id))
        return [(k, copy.deepcopy(v)) for k, v in entries.items() if k not in taken[section]]

    if seedboxes := fresh("seedboxes"):
        listed = raw.setdefault("seedboxes", [])
        if isinstance(listed, list):  # else the schema says what is wrong with the YAML
            listed += [{**value, "id": sb_id} for sb_id, value in sorted(seedboxes)]
    for section in NAMED:
        if entries := fresh(section):
            named = raw.setdefault(section, {})
            if isinstance(named, dict):
                named.update(entries)
    for section in SINGLETONS:
        for _, value in fresh(section):
            raw[section] = value
    if rules := fresh("rules"):
        listed = raw.setdefault("rules", [])
        if isinstance(listed, list):
            raw["rules"] = [
                {**{k: v for k, v in value.items() if k != "order"}, "id": rule_id}
                for rule_id, value in sorted(rules, key=rule_order)
            ] + listed
    return raw, shadowed


def entry_path(section: str, entry_id: str, merged: Mapping[str, Any]) -> str:
    """Where the entry sits in the merged mapping, as the loader's errors name it."""
    if section in SINGLETONS:
        return section
    if section in NAMED:
        return f"{section}.{entry_id}"
    listed = merged.get(section)
    if isinstance(listed, list):
        for i, value in enumerate(listed):
            if isinstance(value, dict) and value.get("id") == entry_id:
                return f"{section}[{i}]"
    return section


def field_errors(errors: Iterable[str], prefix: str) -> dict[str, str]:
    """The loader's `path: reason` lines inside the entry at prefix, by the key inside
    it (`client.url`, `match[0]`; `base` for the entry as a whole)."""
    fields: dict[str, str] = {}
    for line in errors:
        path, sep, reason = line.partition(": ")
        if not sep:
            continue
        if path == prefix:
            fields.setdefault(WHOLE_ENTRY, reason)
        elif path.startswith(f"{prefix}."):
            fields.setdefault(path[len(prefix) + 1 :], reason)
        elif path.startswith(f"{prefix}["):
            fields.setdefault(path[len(prefix) :], reason)
    return fields


def runtime_notes(errors: list[str], merged: Mapping[str, Any], layer: Layer) -> list[str]:
    """The loader's errors, those inside a runtime entry saying so: such an entry is in
    no file, and a bridge refusing to start must say where it came from."""
    prefixes = [
        (entry_path(section, entry_id, merged), entry_name(section, entry_id))
        for section in SECTIONS
        for entry_id in layer.get(section, {})
    ]
    out = []
    for line in errors:
        path = line.partition(": ")[0]
        for prefix, name in prefixes:
            if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[")):
                line = f"{line} (in {name}, set from Home Assistant)"  # noqa: PLW2901
                break
        out.append(line)
    return out


def redacted(value: Any) -> Any:
    """A copy with every secret value replaced by "***" (file paths stay: not secrets)."""
    if isinstance(value, dict):
        return {
            k: REDACTED if k in SECRET_KEYS and v is not None else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def redacted_keys(raw: Any, path: str = "") -> list[str]:
    """The key paths `redacted` hides a value at (export names them)."""
    found: list[str] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            here = f"{path}.{k}" if path else str(k)
            if k in SECRET_KEYS and v is not None:
                found.append(here)
            else:
                found += redacted_keys(v, here)
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            found += redacted_keys(v, f"{path}[{i}]")
    return found


def _seedbox_flags(value: Mapping[str, Any]) -> dict[str, bool]:
    """What a form may say about secrets it cannot show."""
    client = value.get("client")
    return {
        "has_key": "key" in value,
        "has_password": "password" in value or "password_file" in value,
        "has_passphrase": "passphrase" in value or "passphrase_file" in value,
        "has_host_key": "known_hosts" in value,
        "has_client_password": isinstance(client, dict)
        and ("password" in client or "password_file" in client),
    }


def _entry(section: str, entry_id: str, source: str, value: Any) -> dict[str, Any]:
    if section == "destinations" and isinstance(value, str):
        value = {"path": value}
    entry: dict[str, Any] = {"id": entry_id, "source": source}
    if section == "rules":
        value = {k: v for k, v in value.items() if k not in ("id", "order")}
    entry["value"] = redacted(value)
    if section == "seedboxes" and isinstance(value, dict):
        entry.update(_seedbox_flags(value))
    if section == "arr" and isinstance(value, dict):
        entry["has_api_key"] = "api_key" in value or "api_key_file" in value
    if section == "home_clients" and isinstance(value, dict):
        entry["has_password"] = "password" in value or "password_file" in value
    return entry


def _dispatch(base: Mapping[str, Any], layer: Layer) -> dict[str, Any]:
    """The dispatch settings in force, every key (sizes in bytes, durations in seconds,
    as the schema reads them), and where they come from."""
    if "dispatch" in base:
        source, value = "yaml", base["dispatch"]
    elif "dispatch" in layer.get("dispatch", {}):
        source, value = "runtime", layer["dispatch"]["dispatch"]
    else:
        source, value = "default", {}
    # an invalid one is shown as written (check-config names what is wrong with it)
    with contextlib.suppress(vol.Invalid):
        parsed = DISPATCH_SCHEMA(copy.deepcopy(value))
        value = {str(k): parsed[str(k)] for k in DISPATCH_SCHEMA.schema}  # in the docs' order
    return {"id": "dispatch", "source": source, "value": redacted(value)}


def sections(base: Mapping[str, Any], layer: Layer) -> dict[str, list[dict[str, Any]]]:
    """Every entry of the sections, redacted, with its source; rules in the order
    they are tried, runtime ones with their `order`."""
    taken = yaml_ids(base)
    out: dict[str, list[dict[str, Any]]] = {}
    seedboxes = base.get("seedboxes")
    out["seedboxes"] = [
        _entry("seedboxes", str(sb.get("id")), "yaml", sb)
        for sb in (seedboxes if isinstance(seedboxes, list) else [])
        if isinstance(sb, dict)
    ] + [
        _entry("seedboxes", sb_id, "runtime", value)
        for sb_id, value in sorted(layer.get("seedboxes", {}).items())
        if sb_id not in taken["seedboxes"]
    ]
    for section in NAMED:
        entries = base.get(section)
        out[section] = [
            _entry(section, str(name), "yaml", value)
            for name, value in (entries.items() if isinstance(entries, dict) else [])
        ] + [
            _entry(section, name, "runtime", value)
            for name, value in sorted(layer.get(section, {}).items())
            if name not in taken[section]
        ]
    runtime_rules = sorted(
        ((k, v) for k, v in layer.get("rules", {}).items() if k not in taken["rules"]),
        key=rule_order,
    )
    rules = base.get("rules")
    out["rules"] = [
        {**_entry("rules", rule_id, "runtime", value), "order": value.get("order", 0)}
        for rule_id, value in runtime_rules
    ] + [
        _entry("rules", str(rule.get("id", f"rules[{i}]")), "yaml", rule)
        for i, rule in enumerate(rules if isinstance(rules, list) else [])
        if isinstance(rule, dict)
    ]
    out["dispatch"] = [_dispatch(base, layer)]
    return {section: out[section] for section in SECTIONS}
