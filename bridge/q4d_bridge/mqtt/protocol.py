"""MQTT protocol v1: topic names and payload encoding/decoding (pure, no sockets).

docs/protocol.md is the contract; keep both in step.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..models import CLASSIC_LABELS, CompletionEvent, Item, Label

PROTOCOL_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FIELD_CHARS = 4096
# Refused before the payload is parsed: deep nesting costs the parser a recursion level
# per level (RecursionError in the thousands), and an integer literal of more than 4300
# digits makes int() raise. No payload of this protocol nests deeper than 3.
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 64  # any JSON number literal, sign, fraction and exponent included
# Integers a consumer can hold exactly (a JSON number is a double in JavaScript), well
# inside SQLite's signed 64-bit INTEGER, with room for sums such as bytes_transferred.
MAX_SAFE_INTEGER = 2**53 - 1
MAX_SIZE = MAX_SAFE_INTEGER  # `size`, bytes (8 PiB)
MAX_TIMESTAMP = float(MAX_SAFE_INTEGER)  # `completed_at`, Unix seconds
HASH_V1 = re.compile(r"^[0-9a-f]{40}$")
STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CLASSIC_NO_HASH = "NotUsed"


class RejectedEvent(ValueError):
    """An incoming event that cannot be accepted; `reason` is a stable code for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    bridge_id: str

    @property
    def completed_filter(self) -> str:
        return f"{self.prefix}/seedbox/+/completed"

    @property
    def sequence_filter(self) -> str:
        return f"{self.prefix}/seedbox/+/sequence"

    def completed(self, seedbox: str) -> str:
        return f"{self.prefix}/seedbox/{seedbox}/completed"

    def label(self, seedbox: str) -> str:
        return f"{self.prefix}/seedbox/{seedbox}/label"

    def seedbox_of(self, topic: str, kind: str = "completed") -> str | None:
        """The seedbox of `<prefix>/seedbox/<seedbox>/<kind>`, else None."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if (
            len(parts) == len(head) + 3
            and parts[: len(head)] == head
            and parts[len(head)] == "seedbox"
            and parts[-1] == kind
        ):
            return parts[len(head) + 1]
        return None

    @property
    def bridge(self) -> str:
        return f"{self.prefix}/bridge/{self.bridge_id}"

    @property
    def status(self) -> str:
        return f"{self.bridge}/status"

    @property
    def state(self) -> str:
        return f"{self.bridge}/state"

    def item(self, item_id: str) -> str:
        return f"{self.bridge}/item/{item_id}"

    @property
    def event(self) -> str:
        return f"{self.bridge}/event"

    @property
    def command(self) -> str:
        return f"{self.bridge}/command"

    @property
    def command_result(self) -> str:
        return f"{self.bridge}/command/result"


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


def _decode_json(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object, refusing what the limits table of docs/protocol.md refuses:
    size and nesting depth before parsing, number length while parsing."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise RejectedEvent("too_large", f"{len(raw)} bytes (limit {MAX_PAYLOAD_BYTES})")
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


def _text(data: dict[str, Any], key: str, *, required: bool) -> str | None:
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


def _integer(data: dict[str, Any], key: str, minimum: int, maximum: int) -> int | None:
    """An optional integer field within bounds (booleans are not integers here)."""
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not int or not minimum <= value <= maximum:
        raise RejectedEvent("wrong_type", f"{key!r} must be an integer from {minimum} to {maximum}")
    return value


def _number(data: dict[str, Any], key: str, minimum: float, maximum: float) -> float | None:
    """An optional finite number field within bounds, as a float."""
    value = data.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not minimum <= value <= maximum:  # NaN fails too
        raise RejectedEvent(
            "wrong_type", f"{key!r} must be a number from {minimum:.0f} to {maximum:.0f}"
        )
    return float(value)


def normalise_hash(value: str | None) -> str | None:
    if value is None or value in ("", "-", CLASSIC_NO_HASH):
        return None
    lowered = value.lower()
    if not HASH_V1.fullmatch(lowered):
        raise RejectedEvent("bad_hash", "hash must be 40 hex characters (v1 info-hash)")
    return lowered


def parse_completed(raw: bytes, topic_seedbox: str) -> CompletionEvent:
    """Validate a v1 completion event; the topic's seedbox is authoritative."""
    data = _decode_json(raw)
    version = data.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RejectedEvent("unsupported_version", f"'v' must be {PROTOCOL_VERSION}")
    event_id = _text(data, "event_id", required=True)
    assert event_id is not None
    if not EVENT_ID.fullmatch(event_id):
        raise RejectedEvent("bad_event_id", "event_id must be 1-128 of [A-Za-z0-9._:-]")
    seedbox = _text(data, "seedbox", required=False)
    if seedbox is not None and seedbox != topic_seedbox:
        raise RejectedEvent(
            "seedbox_mismatch", f"payload says {seedbox!r}, topic says {topic_seedbox!r}"
        )
    path = _text(data, "path", required=True)
    assert path is not None
    name = _text(data, "name", required=False) or path.rstrip("/").rsplit("/", 1)[-1]
    tags_raw = data.get("tags", [])
    if tags_raw is None:
        tags_raw = []
    if isinstance(tags_raw, str):
        tags_raw = [t.strip() for t in tags_raw.split(",") if t.strip()]
    if not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw):
        raise RejectedEvent("wrong_type", "'tags' must be a list of strings")
    size = _integer(data, "size", 0, MAX_SIZE)
    completed_at = _number(data, "completed_at", 0.0, MAX_TIMESTAMP)
    stream, seq = _sequence_fields(data, required=False)
    return CompletionEvent(
        event_id=event_id,
        seedbox=topic_seedbox,
        path=path,
        name=name,
        hash=normalise_hash(_text(data, "hash", required=False)),
        client=_text(data, "client", required=False),
        category=_text(data, "category", required=False) or None,
        tags=tuple(tags_raw),
        tracker=_text(data, "tracker", required=False) or None,
        size=size,
        type_code=_text(data, "type", required=False) or None,
        completed_at=completed_at,
        stream=stream,
        seq=seq,
    )


def _sequence_fields(data: dict[str, Any], *, required: bool) -> tuple[str | None, int | None]:
    """`stream` and `seq`: both or neither (unless required)."""
    stream = _text(data, "stream", required=required)
    seq = _integer(data, "seq", 1, MAX_SAFE_INTEGER)
    if (stream is None) != (seq is None) or (required and seq is None):
        raise RejectedEvent("missing_field", "'stream' and 'seq' come together")
    if stream is not None and not STREAM_ID.fullmatch(stream):
        raise RejectedEvent("wrong_type", "'stream' must be 1-64 of [A-Za-z0-9_-]")
    return stream, seq


def parse_sequence(raw: bytes) -> tuple[str, int]:
    """A seedbox outbox's last sent number, `{"v": 1, "stream": ..., "seq": ...}`."""
    data = _decode_json(raw)
    if type(data.get("v")) is not int or data["v"] != PROTOCOL_VERSION:
        raise RejectedEvent("unsupported_version", f"'v' must be {PROTOCOL_VERSION}")
    stream, seq = _sequence_fields(data, required=True)
    assert stream is not None and seq is not None
    return stream, seq


def sequence_in(raw: bytes) -> tuple[str, int] | None:
    """The (stream, seq) of a completion event that was rejected for another reason:
    it did arrive, and must not be reported as lost."""
    try:
        data = _decode_json(raw)
        stream, seq = _sequence_fields(data, required=True)
    except RejectedEvent:
        return None
    assert stream is not None and seq is not None
    return stream, seq


def parse_classic_down(raw: bytes, seedbox: str) -> CompletionEvent:
    """Q4D classic `PATH\\tHASH\\tTYPE` (extra fields ignored, as Q4D's Python client does)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise RejectedEvent("too_large", f"{len(raw)} bytes (limit {MAX_PAYLOAD_BYTES})")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise RejectedEvent("malformed", f"not UTF-8: {err}") from err
    fields = text.split("\t")
    if len(fields) < 3:
        raise RejectedEvent(
            "malformed", f"expected PATH<TAB>HASH<TAB>TYPE, got {len(fields)} field(s)"
        )
    path, hash_, type_code = fields[0], fields[1].strip(), fields[2].strip()
    if not path:
        raise RejectedEvent("missing_field", "PATH is empty")
    if len(path) > MAX_FIELD_CHARS:
        raise RejectedEvent("too_large", f"PATH is longer than {MAX_FIELD_CHARS} characters")
    info_hash = normalise_hash(hash_)
    # Classic events carry no id; the same PATH/HASH/TYPE line is the same event.
    digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:20]
    return CompletionEvent(
        event_id=f"classic-{digest}",
        seedbox=seedbox,
        path=path,
        name=path.rstrip("/").rsplit("/", 1)[-1],
        hash=info_hash,
        type_code=type_code or None,
        classic=True,
    )


def label_payload(info_hash: str, label: Label, mode: str = "tag") -> bytes:
    return dumps({"v": PROTOCOL_VERSION, "hash": info_hash, "label": label.value, "mode": mode})


def classic_label_payload(info_hash: str, label: Label) -> bytes:
    return f"{info_hash}\t{CLASSIC_LABELS[label]}".encode()


def item_payload(item: Item) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "id": item.id,
        "seedbox": item.seedbox,
        "hash": item.hash,
        "name": item.name,
        "remote_path": item.remote_path,
        "destination": item.destination,
        "local_path": item.local_path,
        "category": item.category,
        "tags": list(item.tags),
        "type": item.type_code,
        "size": item.size,
        "state": item.state.value,
        "engine": item.engine,
        "paused": item.paused,
        "priority": item.priority,
        "bytes_done": item.bytes_done,
        "progress": item.progress,
        "rate": round(item.rate, 1),
        "eta": None if item.eta is None else round(item.eta, 1),
        "attempts": item.attempts,
        "error": None
        if item.last_error is None
        else {"code": item.error_code or "error", "message": item.last_error},
        "received_at": item.received_at,
        "started_at": item.started_at,
        "finished_at": item.finished_at,
        "next_attempt_at": item.next_attempt_at,
        "updated_at": item.updated_at,
    }


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    op: str
    args: dict[str, Any]


def parse_command(raw: bytes) -> Command:
    data = _decode_json(raw)
    request_id = data.get("id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        raise RejectedEvent("bad_request", "'id' must be a non-empty string (max 128)")
    op = data.get("op")
    if not isinstance(op, str) or not op:
        raise RejectedEvent("bad_request", "'op' must be a non-empty string")
    args = data.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RejectedEvent("bad_request", "'args' must be an object")
    return Command(request_id, op, args)


def command_result(
    request_id: str | None,
    *,
    result: Any = None,
    error: tuple[str, str] | None = None,
) -> bytes:
    payload: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "ok": error is None}
    if error is None:
        payload["result"] = result
    else:
        payload["error"] = {"code": error[0], "message": error[1]}
    return dumps(payload)
