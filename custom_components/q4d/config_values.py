"""The bridge's configuration entries as Home Assistant sees them: the retained
`config` topic parsed, the subentry data derived from an entry, and the values the
subentry flows and the options' dispatch weights send back (`config_set`). Pure logic,
no I/O.

The bridge owns the configuration; a subentry mirrors one of its entries. What the
flows send is the entry's current value with the form's fields over it, so keys the
forms do not show (a seedbox's `reconcile`, a destination's `arr_import`...) survive
an edit. Secrets never reach a subentry: the bridge keeps them in files and publishes
their paths (`password_file`, `key`), which are sent back unchanged to keep them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from .models import PayloadError, decode

# subentry type -> the bridge's section
SECTIONS: Final = {
    "seedbox": "seedboxes", "destination": "destinations", "rule": "rules", "arr": "arr",
    "home_client": "home_clients",
}  # fmt: skip
# The bridge's one-entry section of dispatch weights: an option, not a subentry.
DISPATCH: Final = "dispatch"
REDACTED: Final = "***"
# What a form sends and a subentry never holds.
SECRET_KEYS: Final = frozenset({"password", "passphrase", "private_key", "host_key", "api_key"})
# The bridge's rules (bridge/q4d_bridge/config/schema.py and rules.py).
IDENTIFIER: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENGINES: Final = ("auto", "lftp", "sftp", "rsync")
CLIENT_TYPES: Final = ("qbittorrent", "transmission", "deluge", "rtorrent")
ARR_TYPES: Final = ("sonarr", "radarr")
HOME_CLIENT_TYPES: Final = {"qbittorrent": "qBittorrent", "transmission": "Transmission"}
RULE_FIELDS: Final = ("category", "tags", "tracker", "name", "path", "type", "size", "seedbox")
STRING_OPS: Final = ("is", "contains", "not", "regex", "glob")
SIZE_OPS: Final = ("gt", "lt")


@dataclass(frozen=True, slots=True)
class BridgeEntry:
    """One entry of a section of the bridge's effective configuration."""

    id: str
    read_only: bool  # from the YAML file: edited there, never from Home Assistant
    value: dict[str, Any]  # as published: secrets are "***" or absent


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The `config` topic: the entries of each section, rules in effective order."""

    revision: int
    sections: dict[str, list[BridgeEntry]]
    dispatch: BridgeEntry | None = None  # None: a bridge without the runtime section

    def entry(self, section: str, entry_id: str) -> BridgeEntry | None:
        """The entry of that section with that id."""
        return next((e for e in self.sections[section] if e.id == entry_id), None)


def parse_config(payload: str | bytes | bytearray) -> BridgeConfig:
    """Parse the retained `config` topic (the `config_get` answer's body)."""
    data = decode(payload)
    revision = data.get("revision")
    sections = data.get("sections")
    if type(revision) is not int or not isinstance(sections, dict):
        raise PayloadError("expected an integer revision and a sections object")
    parsed: dict[str, list[BridgeEntry]] = {}
    for section in SECTIONS.values():
        entries = sections.get(section, [])
        if not isinstance(entries, list):
            raise PayloadError(f"{section} must be a list")
        parsed[section] = [_entry(section, raw) for raw in entries]
    dispatch = sections.get(DISPATCH)
    if dispatch is not None and (not isinstance(dispatch, list) or len(dispatch) != 1):
        raise PayloadError(f"{DISPATCH} must be a list of one entry")
    return BridgeConfig(
        revision=revision,
        sections=parsed,
        dispatch=None if dispatch is None else _entry(DISPATCH, dispatch[0]),
    )


def _entry(section: str, raw: Any) -> BridgeEntry:
    if not isinstance(raw, dict) or type(raw.get("id")) is not str:
        raise PayloadError(f"an entry of {section} has no id")
    value = raw.get("value")
    if isinstance(value, str) and section == "destinations":
        value = {"path": value}  # a destination may be its folder alone
    if not isinstance(value, dict):
        raise PayloadError(f"{section}.{raw['id']}: value must be an object")
    value = dict(value)
    # The bridge says beside the value what a form cannot be shown (`has_password`...).
    value |= {k: v for k, v in raw.items() if k.startswith("has_") and type(v) is bool}
    if section == "rules" and type(raw.get("order")) is int:
        value["order"] = raw["order"]
    return BridgeEntry(id=raw["id"], read_only=raw.get("source") == "yaml", value=value)


def public(value: dict[str, Any]) -> dict[str, Any]:
    """The value without secrets, redacted values and the bridge's `has_*` hints."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in SECRET_KEYS or key.startswith("has_") or item == REDACTED:
            continue
        out[key] = public(item) if isinstance(item, dict) else item
    return out


def unique_id(subentry_type: str, entry_id: str) -> str:
    """Subentry unique ids are unique per config entry across types."""
    return f"{subentry_type}:{entry_id}"


def subentry_data(subentry_type: str, entry: BridgeEntry) -> dict[str, Any]:
    """What a subentry holds of a bridge entry."""
    return {"id": entry.id, "read_only": entry.read_only, "value": public(entry.value)}


def subentry_title(subentry_type: str, entry: BridgeEntry) -> str:
    """A seedbox's name, a destination with its folder, a rule with its order, an arr
    instance with its app, a home torrent client with its kind."""
    value = entry.value
    if subentry_type == "seedbox":
        title = str(value.get("name") or entry.id)
    elif subentry_type == "destination":
        title = f"{entry.id} ({value.get('path')})"
    elif subentry_type == "arr":
        title = f"{entry.id} ({str(value.get('type', '')).capitalize()})"
    elif subentry_type == "home_client":
        kind = str(value.get("type", ""))
        title = f"{entry.id} ({HOME_CLIENT_TYPES.get(kind, kind)})"
    elif "order" in value:
        title = f"#{value['order']} {entry.id}"
    else:
        title = entry.id
    return f"{title} (YAML)" if entry.read_only else title


# --- seedboxes ---------------------------------------------------------------------------


def seedbox_value(
    form: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The seedbox's SSH settings from the `ssh` form over its current value, and the
    form's errors. A secret left blank keeps the one the bridge holds (its file)."""
    value = public(current)
    value.pop("client", None)
    for key in ("id", "host", "user", "engine"):
        value[key] = form[key]
    value["port"] = int(form["port"])
    value["max_concurrent"] = int(form["max_concurrent"])
    value["remote_roots"] = [r.strip() for r in form.get("remote_roots") or [] if r.strip()]
    _set_or_drop(value, "name", form.get("name", "").strip())
    moved = (form["host"], value["port"]) != (current.get("host"), current.get("port", 22))
    if moved or form.get("new_host_key"):
        value.pop("known_hosts", None)  # its host key is shown and confirmed anew
    errors: dict[str, str] = {}
    if form["auth"] == "key":
        for key in ("password", "password_file"):
            value.pop(key, None)
        if form.get("private_key", "").strip():
            value.pop("key", None)
            value["private_key"] = form["private_key"].strip() + "\n"
        elif "key" not in value:
            errors["private_key"] = "secret_required"
        if form.get("passphrase"):
            value.pop("passphrase_file", None)
            value["passphrase"] = form["passphrase"]
    else:
        for key in ("key", "passphrase_file"):
            value.pop(key, None)
        if form.get("password"):
            value.pop("password_file", None)
            value["password"] = form["password"]
        elif "password_file" not in value:
            errors["password"] = "secret_required"  # noqa: S105 - an error key
    return value, errors


def seedbox_auth(value: dict[str, Any]) -> str:
    """How a seedbox logs in: by key unless it has a password."""
    has_password = "password_file" in value or value.get("has_password") is True
    return "password" if has_password and "key" not in value else "key"


def client_value(
    form: dict[str, Any], current: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The seedbox's torrent client from the `client` form over its current one (None:
    no client), and the form's errors."""
    if form["type"] == "none":
        return None, {}
    client = public(current or {})
    if client and client.get("type") != form["type"]:
        # Another kind of client: its settings do not carry over, nor does its password
        # (which the bridge keeps while a value leaves it out; null drops it).
        client = {"password": None}
    client["type"] = form["type"]
    client["url"] = form.get("url", "").strip()
    _set_or_drop(client, "username", form.get("username", "").strip())
    if form.get("password"):
        client.pop("password_file", None)
        client["password"] = form["password"]
    return client, {} if client["url"] else {"url": "url_required"}


# --- destinations ------------------------------------------------------------------------


def destination_value(form: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A destination's mapping from the form over its current one."""
    value = public(current)
    value["path"] = form["path"].strip()
    for key in ("owner", "group"):
        account = form.get(key, "").strip()
        _set_or_drop(value, key, int(account) if account.isdigit() else account)
    if not form.get("extract"):
        value.pop("extract", None)
    elif not value.get("extract"):
        value["extract"] = True  # an existing `{subfolder, keep_archives}` is kept
    return value


# --- Sonarr/Radarr instances ---------------------------------------------------------------


def arr_value(form: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """An arr instance's mapping from the form over its current one (timeout, path_map
    kept). The API key only when one is typed: else the bridge's key file stays named,
    which the bridge accepts for its own instance (tested and saved with the key HA
    never sees)."""
    value = public(current)
    value["type"] = form["type"]
    value["url"] = form["url"].strip()
    if key := form.get("api_key", "").strip():
        value.pop("api_key_file", None)
        value["api_key"] = key
    return value


# --- home torrent clients ---------------------------------------------------------------


def home_client_value(form: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A home torrent client's mapping from the form over its current one
    (`recheck_timeout` kept). The password as `arr_value` treats the API key: only
    when one is typed, else the bridge's password file stays named."""
    value = public(current)
    value["type"] = form["type"]
    value["url"] = form["url"].strip()
    _set_or_drop(value, "username", form.get("username", "").strip())
    value["verify_tls"] = bool(form.get("verify_tls", True))
    if password := form.get("password", ""):
        value.pop("password_file", None)
        value["password"] = password
    return value


# --- dispatch weights ----------------------------------------------------------------------

SIZE: Final = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
SIZE_UNITS: Final = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
DISPATCH_WEIGHTS: Final = ("disk_weight", "download_weight", "bandwidth_weight", "min_score")


def size_text(size: Any) -> str:
    """A size as the bridge reads it back: `10GiB` for the bytes it may publish."""
    if type(size) is not int:
        return str(size)
    for unit, factor in SIZE_UNITS:
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def dispatch_form(value: dict[str, Any]) -> dict[str, Any]:
    """The dispatch form filled in from the bridge's entry."""
    form: dict[str, Any] = {k: value[k] for k in DISPATCH_WEIGHTS if k in value}
    form["size_estimate"] = size_text(value.get("size_estimate", "10GiB"))
    categories = value.get("categories")
    form["categories"] = [str(c) for c in categories] if isinstance(categories, list) else []
    return form


def dispatch_value(
    form: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The dispatch weights from the form over the bridge's entry (keys the form does
    not show, such as `history`, kept), and the form's errors (a size the bridge could
    not read)."""
    value = public(current)
    for key in DISPATCH_WEIGHTS:
        value[key] = float(form[key])
    size = str(form.get("size_estimate", "")).strip()
    value["size_estimate"] = size
    value["categories"] = [c.strip() for c in form.get("categories") or [] if c.strip()]
    return value, {} if SIZE.match(size) else {"size_estimate": "invalid_size"}


# --- rules -------------------------------------------------------------------------------


def condition_of(raw: Any) -> tuple[str, str, str] | None:
    """(field, operator, value) of a condition as written in the YAML
    (`{field: category, is: tv}`) or as the bridge normalises it."""
    if not isinstance(raw, dict) or raw.get("field") not in RULE_FIELDS:
        return None
    if "op" in raw and "value" in raw:
        return str(raw["field"]), str(raw["op"]), str(raw["value"])
    ops = [k for k in raw if k in STRING_OPS + SIZE_OPS]
    return (str(raw["field"]), ops[0], str(raw[ops[0]])) if len(ops) == 1 else None


def condition(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A condition from the `condition` form, and the form's errors (what the bridge
    would refuse: an operator for another field, a size that is no integer, a regex
    Python cannot compile)."""
    field, op, text = form["field"], form["operator"], form.get("value", "")
    allowed = SIZE_OPS if field == "size" else STRING_OPS
    if op not in allowed:
        return {}, {"operator": "operator_not_for_field"}
    if field == "size":
        if not text.strip().isdigit():
            return {}, {"value": "invalid_size"}
        return {"field": field, op: int(text.strip())}, {}
    if op == "regex":
        try:
            re.compile(text)
        except re.error:
            return {}, {"value": "invalid_regex"}
    return {"field": field, op: text}, {}


def rule_value(
    form: dict[str, Any], conditions: list[dict[str, Any]], current: dict[str, Any]
) -> dict[str, Any]:
    """A rule from the `rule` form and its conditions, over its current value."""
    value = public(current)
    value["id"] = form["id"]
    value["order"] = int(form["order"])
    value["match"] = conditions
    _set_or_drop(value, "destination", form.get("destination") or "")
    if form.get("ignore"):
        value["ignore"] = True
    else:
        value.pop("ignore", None)
    return value


def _set_or_drop(value: dict[str, Any], key: str, item: Any) -> None:
    if item in ("", None):
        value.pop(key, None)
    else:
        value[key] = item
