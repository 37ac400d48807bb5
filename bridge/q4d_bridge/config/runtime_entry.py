"""A runtime entry as config_set sends it, to the entry as stored (config/runtime.py):
its id checked, a rule's order kept or given, and every secret in it (passwords, a
passphrase, a private key's text, a confirmed host key, a Sonarr/Radarr API key, a home
client's password) turned into a file to write (secret_files.py), the entry naming the
file. Pure."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..addon.keys import known_hosts, private_key
from .runtime import WHOLE_ENTRY

# section -> the files its entries' secrets are kept in (secret_files.py names them
# `<section>-<id>-<field>`): a seedbox's login, client password and pinned host key;
# the one secret of an arr instance or a home client.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "seedboxes": ("password", "passphrase", "key", "client_password", "known_hosts"),
    "arr": ("api_key",),
    "home_clients": ("password",),
}
# Sections whose secrets are plain keys (_plain_secret): `<field>` sent, `<field>_file`
# kept. A seedbox's are not: its login keys replace each other (_login).
PLAIN_SECRETS = ("arr", "home_clients")
# Top-level keys of a stored entry that name a file the layer wrote.
_FILE_KEYS = ("key", "password_file", "passphrase_file", "known_hosts", "api_key_file")
# How an entry logs in: given any of these, the entry's login is what they say.
_LOGIN_KEYS = ("private_key", "key", "password", "password_file", "passphrase", "passphrase_file")


class EntryError(Exception):
    """An entry refused before the loader sees it: `fields` maps its keys to reasons."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


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
    trust on first use would use; left out, the pinned file the entry had stays while
    the entry's address does (another host needs its key confirmed again)."""
    host_key = value.pop("host_key", None)
    if host_key is None:
        if (
            "known_hosts" not in value
            and previous is not None
            and "known_hosts" in previous
            and not moved(previous, value)
        ):
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


def _plain_secret(
    name: str,
    value: dict[str, Any],
    previous: Mapping[str, Any] | None,
    paths: Callable[[str], str],
    out: Prepared,
    fields: dict[str, str],
) -> None:
    """A secret such as an arr instance's API key or a home client's password: given,
    it is written; null drops it; left out, the stored one stays (HA was only told that
    there is one). A file of another's is refused, as for _own_files."""
    kept = f"{name}_file"
    if name in value:
        secret = value.pop(name)
        value.pop(kept, None)
        if secret is not None and (text := _secret_text(fields, name, secret)):
            out.files[name] = text
            value[kept] = paths(name)
        return
    path = value.get(kept)
    if path is None and previous is not None and kept in previous:
        value[kept] = previous[kept]
    elif path is not None and path != paths(name):
        fields[kept] = f"send the secret itself ({name}), not a file"


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
    if section in PLAIN_SECRETS:
        for name in SECRET_FIELDS[section]:
            _plain_secret(name, value, previous, paths, out, fields)
    elif section == "rules":
        order = value.setdefault(
            "order", previous.get("order", next_order) if previous else next_order
        )
        if type(order) is not int or not -(10**6) <= order <= 10**6:
            fields["order"] = "expected a whole number (-1000000 to 1000000)"
    elif section == "seedboxes":
        _login(value, previous, paths, out, fields)
        _client(value, previous, paths, out, fields)
        _host_key(value, previous, paths, out, fields)
        _own_files(value, paths, fields)
    if fields:
        raise EntryError(fields)
    return out


def moved(previous: Any, value: Any) -> bool:
    """Whether a seedbox entry's SSH address changed: a key pinned for the old one is
    no longer the seedbox's."""
    if not isinstance(previous, Mapping) or not isinstance(value, Mapping):
        return False
    return (previous.get("host"), previous.get("port", 22)) != (
        value.get("host"),
        value.get("port", 22),
    )


def secret_paths(value: Any) -> list[str]:
    """The file paths a stored entry names (a seedbox's key, secret and host key files,
    an arr instance's API key file, a home client's password file)."""
    if not isinstance(value, dict):
        return []
    found = [value.get(k) for k in _FILE_KEYS]
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
    for k in _FILE_KEYS:
        if out.get(k) in moved:
            out[k] = moved[out[k]]
    client = out.get("client")
    if isinstance(client, dict) and client.get("password_file") in moved:
        out["client"] = {**client, "password_file": moved[client["password_file"]]}
    return out
