"""The values a bridge configuration holds — identifiers, paths, durations, sizes,
permission bits, rule conditions, addresses, secrets — each checked by a validator that
says what it expected, for the schemas in schema.py."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import voluptuous as vol

from ..rules import RULE_FIELDS, SIZE_OPS, STRING_OPS, check_subdir_template

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TOPIC_PREFIX_PATTERN = r"^[^#+\x00]+$"


def identifier(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(ID_PATTERN, value):
        raise vol.Invalid("must be lowercase letters, digits, '-' or '_' (max 63), e.g. 'seedbox1'")
    return value


def absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise vol.Invalid(f"must be an absolute path, got {value!r}")
    return value


def existing_file(value: Any) -> str:
    path = absolute_path(value)
    if not Path(path).is_file():
        raise vol.Invalid(f"file not found: {path}")
    return path


def torrent_file_template(value: Any) -> str:
    """Where the seedbox keeps a torrent's .torrent: `{hash}` (lowercase) or `{HASH}`."""
    path = absolute_path(value)
    if "{hash}" not in path and "{HASH}" not in path:
        raise vol.Invalid("must contain {hash} or {HASH}, e.g. /home/me/.session/{HASH}.torrent")
    try:
        path.format(hash="0", HASH="0")
    except (KeyError, IndexError, ValueError) as err:
        raise vol.Invalid(f"only {{hash}} and {{HASH}} may appear in braces: {err}") from err
    return path


def duration(value: Any) -> float:
    """Seconds as a number, or a string like `90s`, `15m`, `6h`, `7d`."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a duration like 30s, 15m, 6h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise vol.Invalid("duration must not be negative")
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
    if not match:
        raise vol.Invalid(f"expected a duration like 30s, 15m, 6h or 7d, got {value!r}")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def size(value: Any) -> int:
    """Bytes as an integer, or a string like `512KiB`, `8MiB`, `1GiB`."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a size like 256KiB or 8MiB")
    if isinstance(value, int):
        if value < 0:
            raise vol.Invalid("size must not be negative")
        return value
    match = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*", str(value))
    if not match:
        raise vol.Invalid(f"expected a size like 256KiB or 8MiB, got {value!r}")
    factor = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}[
        match.group(2)
    ]
    return int(match.group(1)) * factor


def topic_prefix(value: str) -> str:
    """The first topic level(s), without leading or trailing `/` (removed) or spaces:
    Home Assistant's config flow strips those, and must find the same topics."""
    prefix = value.strip("/")
    if not prefix or not re.match(TOPIC_PREFIX_PATTERN, prefix):
        raise vol.Invalid("must name at least one topic level, without +, # or NUL")
    if prefix != prefix.strip():
        raise vol.Invalid("must not start or end with a space")
    return prefix


def mode(owner: int) -> Any:
    """Permission bits as octal (`"0644"`, or YAML's 0644), at most 0777, that keep the
    `owner` bits the bridge needs to replace and repair what it landed."""

    def validate(value: Any) -> int:
        if isinstance(value, bool):
            raise vol.Invalid("expected permission bits like 0644")
        if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value.strip()):
            value = int(value.strip(), 8)
        if not isinstance(value, int) or not 0 <= value <= 0o777:
            raise vol.Invalid(f"expected permission bits like 0644 (at most 0777), got {value!r}")
        if value & owner != owner:
            raise vol.Invalid(f"must keep the owner's bits {owner:04o}, got {value:04o}")
        return value

    return validate


def text(value: Any) -> str:
    """A string; a bare number also counts, since Q4D_BROKER__PASSWORD=123456 reads as one."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise vol.Invalid("expected a string")


def regex(value: Any) -> str:
    try:
        re.compile(str(value))
    except re.error as err:
        raise vol.Invalid(f"invalid regular expression: {err}") from err
    return str(value)


def subdir(value: str) -> str:
    try:
        return check_subdir_template(value)
    except ValueError as err:
        raise vol.Invalid(str(err)) from err


def condition(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise vol.Invalid("a condition is a mapping like {field: category, is: tv}")
    field_ = value.get("field")
    if field_ not in RULE_FIELDS:
        raise vol.Invalid(f"field must be one of {', '.join(RULE_FIELDS)}, got {field_!r}")
    ops = [k for k in value if k != "field"]
    allowed = SIZE_OPS if field_ == "size" else STRING_OPS
    if len(ops) != 1 or ops[0] not in allowed:
        raise vol.Invalid(f"a {field_} condition needs exactly one of {', '.join(allowed)}")
    op = ops[0]
    if field_ == "size":
        return {"field": field_, "op": op, "value": vol.Coerce(int)(value[op])}
    operand = str(value[op])
    if op == "regex":
        regex(operand)
    return {"field": field_, "op": op, "value": operand}


def ip_address(value: Any) -> str:
    """An address to listen on, as a literal: binding to a host name would need a lookup."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise vol.Invalid(
            f"must be an IP address such as 127.0.0.1, 192.168.1.10 or 0.0.0.0, got {value!r}"
        ) from None


def secret(min_length: int) -> Any:
    return vol.All(
        text, vol.Length(min=min_length, msg=f"must be at least {min_length} characters")
    )


def login_secret(value: Any) -> str:
    """An SSH password or key passphrase: one line, which lftp's command language and
    sshpass both need (neither can pass a newline or another control character)."""
    secret_text = secret(1)(value)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in secret_text):
        raise vol.Invalid("must be one line without control characters")
    if len(secret_text) > 1024:
        raise vol.Invalid("must be at most 1024 characters")
    return str(secret_text)
