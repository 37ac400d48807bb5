"""Decoding of the bridge's JSON payloads, and lenient readers of their fields."""

from __future__ import annotations

import json
from typing import Any

from homeassistant.util.json import json_loads

from ..const import PROTOCOL_VERSION


class PayloadError(ValueError):
    """A payload from the bridge that cannot be used."""


class UnsupportedVersion(PayloadError):
    """A payload of another protocol version than 1."""


def decode(payload: str | bytes | bytearray) -> dict[str, Any]:
    """Decode a JSON object payload of protocol version 1."""
    try:
        data = json_loads(payload)  # orjson, three times faster: items come by the thousand
    except ValueError:
        try:  # what only Python's parser reads (NaN, integers beyond 64 bits) still goes
            data = json.loads(payload)
        except ValueError as err:
            raise PayloadError(f"not JSON: {err}") from err
    if not isinstance(data, dict):
        raise PayloadError("not a JSON object")
    version = data.get("v")
    if version is not None and version != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"unsupported protocol version {version!r}")
    return data


# The readers below test exact types: payloads come from JSON, which makes nothing
# else, and `type(...) is` is what a thousand items a second can afford (it also keeps
# booleans, an int subclass, from counting as numbers).


def req_str(data: dict[str, Any], key: str) -> str:
    """A string field the payload cannot do without."""
    value = data.get(key)
    if type(value) is not str:
        raise PayloadError(f"{key!r} must be a string")
    return value


def opt_str(data: dict[str, Any], key: str) -> str | None:
    """A string field, or None."""
    value = data.get(key)
    return value if type(value) is str else None


def opt_float(data: dict[str, Any], key: str) -> float | None:
    """A number field (booleans are not numbers), or None."""
    value = data.get(key)
    if type(value) is float:
        return value
    return float(value) if type(value) is int else None


def opt_int(data: dict[str, Any], key: str) -> int | None:
    """A number field as an integer, or None."""
    value = data.get(key)
    if type(value) is int:
        return value
    return int(value) if type(value) is float else None


def int_field(data: dict[str, Any], key: str, default: int = 0) -> int:
    """A number field as an integer, or the default."""
    value = opt_int(data, key)
    return default if value is None else value


def float_field(data: dict[str, Any], key: str, default: float = 0.0) -> float:
    """A number field, or the default."""
    value = opt_float(data, key)
    return default if value is None else value


def opt_bool(data: dict[str, Any], key: str) -> bool | None:
    """A boolean field, or None."""
    value = data.get(key)
    return value if type(value) is bool else None


def obj_field(data: dict[str, Any], key: str) -> dict[str, Any]:
    """An object field, or an empty one."""
    value = data.get(key)
    return value if type(value) is dict else {}
