"""The runtime configuration layer (docs/configuration.md, "Runtime configuration"):
seedboxes, destinations and rules set from Home Assistant, kept in the store, merged
into the YAML file's raw mapping before the loader's schema and cross-checks run, so an
entry set at runtime is checked by exactly the code `check-config` runs.

Pure: the model, the merge, the read-only rule for ids the YAML defines, turning secrets
sent in an entry into files to write (secret_files.py writes them), redaction, and the
loader's `path: reason` lines mapped back to the keys inside one entry."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..addon.keys import known_hosts, private_key
from .values import ID_PATTERN

SECTIONS = ("seedboxes", "destinations", "rules")
REDACTED = "***"
# Values never shown: in answers, the retained config topic, `config export`, logs.
SECRET_KEYS = frozenset({"password", "passphrase", "api_key", "admin_key", "private_key"})
# An error on the entry as a whole (not one of its keys), for a form's general error.
WHOLE_ENTRY = "base"

# section -> id -> the entry as stored: what a YAML file would hold (a rule with its
# `order`), secrets only as the paths of their files.
Layer = dict[str, dict[str, Any]]

# The files a seedbox entry's secrets are kept in (secret_files.py names them).
SECRET_FIELDS = ("password", "passphrase", "key", "client_password", "known_hosts")
# How an entry logs in: given any of these, the entry's login is what they say.
_LOGIN_KEYS = ("private_key", "key", "password", "password_file", "passphrase", "passphrase_file")


class EntryError(Exception):
    """An entry refused before the loader sees it: `fields` maps its keys to reasons."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def empty_layer() -> Layer:
    return {section: {} for section in SECTIONS}


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(ID_PATTERN, value) is not None


def yaml_ids(base: Mapping[str, Any]) -> dict[str, list[str]]:
    """The ids each section has in the YAML file (with the environment over it): those
    entries are read-only from Home Assistant."""
    seedboxes = base.get("seedboxes")
    destinations = base.get("destinations")
    rules = base.get("rules")
    return {
        "seedboxes": [
            sb["id"] for sb in seedboxes if isinstance(sb, dict) and isinstance(sb.get("id"), str)
        ]
        if isinstance(seedboxes, list)
        else [],
        "destinations": [str(k) for k in destinations] if isinstance(destinations, dict) else [],
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
    destinations beside them, runtime rules (by order) BEFORE the YAML's. Also the
    runtime entries the YAML now defines itself ("seedboxes.sb1"): the YAML wins (a
    configuration exported to the file and then edited there)."""
    raw = copy.deepcopy(dict(base))
    taken = yaml_ids(base)
    shadowed: list[str] = []

    def fresh(section: str) -> list[tuple[str, Any]]:
        entries = layer.get(section, {})
        for entry_id in entries:
            if entry_id in taken[section]:
                shadowed.append(f"{section}.{entry_id}")
        return [(k, copy.deepcopy(v)) for k, v in entries.items() if k not in taken[section]]

    if seedboxes := fresh("seedboxes"):
        listed = raw.setdefault("seedboxes", [])
        if isinstance(listed, list):  # else the schema says what is wrong with the YAML
            listed += [{**value, "id": sb_id} for sb_id, value in sorted(seedboxes)]
    if destinations := fresh("destinations"):
        named = raw.setdefault("destinations", {})
        if isinstance(named, dict):
            named.update(destinations)
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
    if section == "destinations":
        return f"destinations.{entry_id}"
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
        (entry_path(section, entry_id, merged), f"{section}.{entry_id}")
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
    return entry


def sections(base: Mapping[str, Any], layer: Layer) -> dict[str, list[dict[str, Any]]]:
    """Every entry of the three sections, redacted, with its source; rules in the order
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
    destinations = base.get("destinations")
    out["destinations"] = [
        _entry("destinations", str(name), "yaml", value)
        for name, value in (destinations.items() if isinstance(destinations, dict) else [])
    ] + [
        _entry("destinations", name, "runtime", value)
        for name, value in sorted(layer.get("destinations", {}).items())
        if name not in taken["destinations"]
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
    return out


# --- an entry as sent, to the entry as stored ---------------------------------------


@dataclass(slots=True)
class Prepared:
    """An entry ready to store: `value` names its secrets by the paths `paths` gives;
    `files` holds what to write there (by secret field)."""

    value: Any
    files: dict[str, str] = field(default_factory=dict)


def _secret_text(fields: dict[str, str], name: str, text: Any) -> str | None:
    """A secret as it can be kept in a file, which the loader reads back stripped."""
    if not isinstance(text, str) or not text:
        fields[name] = "expected a non-empty string"
        return None
    if text != text.strip():
        fields[name] = "must not start or end with a space or line break"
        return None
    return text


def _key_problem(err: ValueError) -> tuple[str, str]:
    """addon.keys' `where: reason` messages, by the field they are about."""
    where, _, reason = str(err).partition(": ")
    return (where, reason) if where in ("private_key", "passphrase") else ("private_key", str(err))


def _login(
    value: dict[str, Any],
    previous: Mapping[str, Any] | None,
    paths: Callable[[str], str],
    out: Prepared,
    fields: dict[str, str],
) -> None:
    """Any login key given replaces the entry's login (key or password, passphrase);
    none given keeps the stored one, whose secrets HA never had."""
    if not any(k in value for k in _LOGIN_KEYS):
        for k in ("key", "password_file", "passphrase_file"):
            if previous is not None and k in previous:
                value[k] = previous[k]
        return
    passphrase = value.pop("passphrase", None)
    if passphrase is not None and (text := _secret_text(fields, "passphrase", passphrase)):
        out.files["passphrase"] = text
        value["passphrase_file"] = paths("passphrase")
    password = value.pop("password", None)
    if password is not None and (text := _secret_text(fields, "password", password)):
        out.files["password"] = text
        value["password_file"] = paths("password")
    pem = value.pop("private_key", None)
    if pem is None:
        return
    if "key" in value:
        fields["private_key"] = "give private_key (the key's text) or key (its path), not both"
        return
    if not isinstance(pem, str):
        fields["private_key"] = "expected the private key's text"
        return
    try:
        out.files["key"] = private_key(pem, "private_key", passphrase)
    except ValueError as err:
        where, reason = _key_problem(err)
        fields[where] = reason
        return
    value["key"] = paths("key")


def _client(
    value: dict[str, Any],
    previous: Mapping[str, Any] | None,
    paths: Callable[[str], str],
    out: Prepared,
    fields: dict[str, str],
) -> None:
    """The client's password: given, it is written; null drops it; left out, the stored
    one stays (HA was only told that there is one)."""
    client = value.get("client")
    if not isinstance(client, dict):
        return
    if "password" in client:
        password = client.pop("password")
        client.pop("password_file", None)
        if password is not None and (text := _secret_text(fields, "client.password", password)):
            out.files["client_password"] = text
            client["password_file"] = paths("client_password")
        return
    before = previous.get("client") if previous is not None else None
    if "password_file" not in client and isinstance(before, dict) and "password_file" in before:
        client["password_file"] = before["password_file"]


def _host_key(
    value: dict[str, Any],
    previous: Mapping[str, Any] | None,
    paths: Callable[[str], str],
    out: Prepared,
    fields: dict[str, str],
) -> None:
    """A host key confirmed in HA (an OpenSSH public key line) is pinned in the file
    trust on first use would use; left out, the pinned file the entry had stays."""
    host_key = value.pop("host_key", None)
    if host_key is None:
        if "known_hosts" not in value and previous is not None and "known_hosts" in previous:
            value["known_hosts"] = previous["known_hosts"]
        return
    if "known_hosts" in value:
        fields["host_key"] = "give host_key (the key) or known_hosts (a file), not both"
        return
    host, port = value.get("host"), value.get("port", 22)
    if not isinstance(host, str) or not host or type(port) is not int:
        return  # the schema names what is wrong with host or port
    if not isinstance(host_key, str):
        fields["host_key"] = "expected a public host key line such as 'ssh-ed25519 AAAA…'"
        return
    try:
        out.files["known_hosts"] = known_hosts(host, port, host_key, "host_key")
    except ValueError as err:
        fields["host_key"] = str(err).partition(": ")[2] or str(err)
        return
    value["known_hosts"] = paths("known_hosts")


def _own_files(value: dict[str, Any], paths: Callable[[str], str], fields: dict[str, str]) -> None:
    """A secret file of a runtime entry is one the layer wrote for it: a path sent over
    MQTT could name any file the bridge can read, whose text would then go to the
    host the entry names as a password."""
    client = value.get("client")
    named = [("password_file", value.get("password_file"), "password"),
             ("passphrase_file", value.get("passphrase_file"), "passphrase"),
             ("client.password_file",
              client.get("password_file") if isinstance(client, dict) else None,
              "client_password")]  # fmt: skip
    for key, path, field_name in named:
        if path is not None and path != paths(field_name):
            fields[key] = f"send the secret itself ({key.removesuffix('_file')}), not a file"


def prepare(
    section: str,
    entry_id: str,
    value: Any,
    previous: Any,
    paths: Callable[[str], str],
    *,
    next_order: int = 0,
) -> Prepared:
    """The entry to store for `value` as config_set sent it (EntryError if it cannot be
    one): its id checked, a rule's order kept or given, secrets turned into files."""
    fields: dict[str, str] = {}
    if section == "destinations":
        if isinstance(value, dict) and "id" in value:
            raise EntryError({"id": "not a destination key (the name is the entry's id)"})
        return Prepared(copy.deepcopy(value))
    if not isinstance(value, dict):
        raise EntryError({WHOLE_ENTRY: "expected a mapping of keys"})
    value = copy.deepcopy(value)
    if value.pop("id", entry_id) != entry_id:
        fields["id"] = f"must be {entry_id!r}, the entry's id, when given"
    out = Prepared(value)
    if section == "rules":
        order = value.setdefault(
            "order", previous.get("order", next_order) if previous else next_order
        )
        if type(order) is not int or not -(10**6) <= order <= 10**6:
            fields["order"] = "expected a whole number (-1000000 to 1000000)"
    else:
        _login(value, previous, paths, out, fields)
        _client(value, previous, paths, out, fields)
        _host_key(value, previous, paths, out, fields)
        _own_files(value, paths, fields)
    if fields:
        raise EntryError(fields)
    return out


def secret_paths(value: Any) -> list[str]:
    """The file paths a stored seedbox entry names (its key, secret and host key files)."""
    if not isinstance(value, dict):
        return []
    found = [value.get(k) for k in ("key", "password_file", "passphrase_file", "known_hosts")]
    client = value.get("client")
    if isinstance(client, dict):
        found.append(client.get("password_file"))
    return [p for p in found if isinstance(p, str)]


def with_paths(value: Any, moved: Mapping[str, str]) -> Any:
    """The stored entry with its secret files at other paths (where they were staged,
    to be checked before they replace the ones in use)."""
    if not isinstance(value, dict) or not moved:
        return value
    out = dict(value)
    for k in ("key", "password_file", "passphrase_file", "known_hosts"):
        if out.get(k) in moved:
            out[k] = moved[out[k]]
    client = out.get("client")
    if isinstance(client, dict) and client.get("password_file") in moved:
        out["client"] = {**client, "password_file": moved[client["password_file"]]}
    return out
