"""What every probe shares: the failure it answers (a precise code Home Assistant
translates, an English message, and findings such as a host key), a value that fails the
configuration schema as key-path errors, and the bound on how long a probe may take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import voluptuous as vol

from ..config.loader import format_path

# A probe answers within this (seconds), whatever the other side does.
TIMEOUT = 10.0
# Where a value names an entry of the running configuration instead of giving settings.
REFERENCE_KEY = "id"


class ProbeError(Exception):
    """The probe's answer when what it tried failed: `code` (stable, translated by Home
    Assistant), `message` (English), `detail` (findings that go with the answer)."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def invalid(lines: Iterable[str]) -> ProbeError:
    """A value the configuration schema refuses: `errors` are `path: reason` lines with
    paths inside the value (`port`, `client.url`, `remote_roots[0]`), `fields` the same
    as a mapping, for a form to put each reason beside its field."""
    errors = sorted(set(lines))
    fields: dict[str, str] = {}
    for line in errors:
        path, _, reason = line.partition(": ")
        fields.setdefault(path, reason)
    return ProbeError("invalid", "; ".join(errors), errors=errors, fields=fields)


def schema_lines(err: vol.Invalid) -> list[str]:
    """A voluptuous failure as the loader prints it, one `path: reason` line each."""
    found = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    return [f"{format_path(e.path)}: {e.msg}" for e in found]


def relative(lines: Iterable[str], where: str) -> list[str]:
    """The loader's lines about the section at `where`, with their paths inside it."""
    return [line.removeprefix(f"{where}.") for line in lines]


def reference(value: Mapping[str, Any]) -> str | None:
    """The entry `{"id": ...}` names, or None when the value gives settings."""
    if set(value) != {REFERENCE_KEY}:
        return None
    ident = value[REFERENCE_KEY]
    if not isinstance(ident, str):
        raise invalid([f"{REFERENCE_KEY}: expected a string"])
    return ident


def configured[T](ident: str, entries: Mapping[str, T], what: str) -> T:
    """The running configuration's entry `ident` names, or `not_found` listing them."""
    entry = entries.get(ident)
    if entry is None:
        known = ", ".join(entries) or "none"
        raise ProbeError("not_found", f"no {what} {ident!r} (known: {known})")
    return entry


SECRET_KEYS = ("password", "passphrase", "private_key", "api_key")


def secrets_in(value: Any) -> list[str]:
    """The secret values a request carries (at any depth), to keep out of its answer."""
    if isinstance(value, list):
        return [s for v in value for s in secrets_in(v)]
    if not isinstance(value, dict):
        return []
    found = [str(v) for k, v in value.items() if k in SECRET_KEYS and v not in (None, "")]
    return found + [s for k, v in value.items() if k not in SECRET_KEYS for s in secrets_in(v)]


def foreign_secret_files(
    raw: Mapping[str, Any], keys: Iterable[str], data_dir: Path, where: str = ""
) -> list[str]:
    """A `<key>_file` in a test's value may only name a file the runtime layer keeps
    (`<data_dir>/secrets/`, as config_get shows it): any other file the bridge can read
    would go to the value's host as the password. The refusals, as `invalid` lines."""
    held = (data_dir / "secrets").resolve()
    return [
        f"{where}{key}_file: only a secret file the bridge keeps; send {key}"
        for key in keys
        if (path := raw.get(f"{key}_file")) is not None
        and (not isinstance(path, str) or Path(path).resolve().parent != held)
    ]
