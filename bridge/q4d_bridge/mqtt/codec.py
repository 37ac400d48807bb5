"""Protocol v1 payloads on the wire: compact JSON out, bounded JSON in (size, nesting and
number length refused before they can cost anything), typed field readers. Pure.

docs/protocol.md is the contract; keep both in step.
"""

from __future__ import annotations

import json
import re
from typing import Any

PROTOCOL_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
# a command may carry a .torrent file (8 MiB at most), base64-encoded
MAX_COMMAND_BYTES = 12 * 1024 * 1024
MAX_FIELD_CHARS = 4096
# Refused before the payload is parsed: deep nesting costs the parser a recursion level
# per level (RecursionError in the thousands), and an integer literal of more than 4300
# digits makes int() raise. No payload of this protocol nests deeper than 3.
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 64  # any JSON number literal, sign, fraction and exponent included
# Integers a consumer can hold exactly (a JSON number is a double in JavaScript), well
# inside SQLite's signed 64-bit INTEGER, with room for sums such as bytes_transferred.
MAX_SAFE_INTEGER = 2**53 - 1


class RejectedEvent(ValueError):
    """An incoming event that cannot be accepted; `reason` is a stable code for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# A JSON string: the scan below skips strings, so brackets inside them do not count.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
# Keep only brackets, and read `{` `}` as `[` `]`: depth is all that matters here.
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# A "\uD800".."\uDFFF" escape: the only way a lone surrogate gets into decoded JSON (the
# UTF-8 decoder refuses encoded ones). Without one, the payload needs no Unicode check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_depth(raw: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH, before the parser recurses into it.

    Under a microsecond for an ordinary event (too few brackets to nest that deep); a
    64 KiB payload of brackets takes about as long as parsing it would (~2 ms)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    brackets = _JSON_STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    if brackets.count(b"[") <= MAX_DEPTH:
        return
    depth = 0
    for byte in brackets:
        depth += 1 if byte == 0x5B else -1  # 0x5B is "["
        if depth > MAX_DEPTH:
            raise RejectedEvent("too_large", f"nested deeper than {MAX_DEPTH} levels")
        if depth < 0:
            return  # a closing bracket too many: the parser stops there, "not JSON"


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:  # before int(), which gives up at 4300 digits
        raise RejectedEvent("too_large", f"a number is longer than {MAX_NUMBER_CHARS} characters")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise RejectedEvent("too_large", f"a number is longer than {MAX_NUMBER_CHARS} characters")
    return float(literal)


# Number literals go through _int and _float, which refuse long ones before converting.
_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float)


def decode_json(raw: bytes, limit: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """Decode a JSON object, refusing what the limits table of docs/protocol.md refuses:
    size and nesting depth before parsing, number length while parsing."""
    if len(raw) > limit:
        raise RejectedEvent("too_large", f"{len(raw)} bytes (limit {limit})")
    _check_depth(raw)
    try:
        data = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RejectedEvent("malformed", f"not UTF-8: {err}") from err
    except json.JSONDecodeError as err:
        raise RejectedEvent("malformed", f"not JSON: {err.msg} at {err.pos}") from err
    if not isinstance(data, dict):
        raise RejectedEvent("malformed", "payload is not a JSON object")
    if _SURROGATE_ESCAPE.search(raw) is not None:
        try:  # a JSON "\udcXX" escape decodes to a lone surrogate, which nothing can store
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:
            raise RejectedEvent("malformed", "payload contains invalid Unicode") from err
    return data


def text_field(data: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise RejectedEvent("missing_field", f"{key!r} is required")
        return None
    if not isinstance(value, str):
        raise RejectedEvent("wrong_type", f"{key!r} must be a string")
    if required and not value:
        raise RejectedEvent("missing_field", f"{key!r} must not be empty")
    if len(value) > MAX_FIELD_CHARS:
        raise RejectedEvent("too_large", f"{key!r} is longer than {MAX_FIELD_CHARS} characters")
    return value


def integer_field(data: dict[str, Any], key: str, minimum: int, maximum: int) -> int | None:
    """An optional integer field within bounds (booleans are not integers here)."""
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not int or not minimum <= value <= maximum:
        raise RejectedEvent("wrong_type", f"{key!r} must be an integer from {minimum} to {maximum}")
    return value


def number_field(data: dict[str, Any], key: str, minimum: float, maximum: float) -> float | None:
    """An optional finite number field within bounds, as a float."""
    value = data.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not minimum <= value <= maximum:  # NaN fails too
        raise RejectedEvent(
            "wrong_type", f"{key!r} must be a number from {minimum:.0f} to {maximum:.0f}"
        )
    return float(value)
