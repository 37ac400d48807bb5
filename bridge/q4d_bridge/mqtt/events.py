"""What seedboxes send: v1 completion events, Q4D-classic `Down` lines and the outbox's
sequence mark. Validation with stable rejection reasons; pure."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..models import CompletionEvent
from .codec import (
    MAX_FIELD_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_SAFE_INTEGER,
    PROTOCOL_VERSION,
    RejectedEvent,
    decode_json,
    integer_field,
    number_field,
    text_field,
)

MAX_SIZE = MAX_SAFE_INTEGER  # `size`, bytes (8 PiB)
MAX_TIMESTAMP = float(MAX_SAFE_INTEGER)  # `completed_at`, Unix seconds
HASH_V1 = re.compile(r"^[0-9a-f]{40}$")
STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CLASSIC_NO_HASH = "NotUsed"


def normalise_hash(value: str | None) -> str | None:
    if value is None or value in ("", "-", CLASSIC_NO_HASH):
        return None
    lowered = value.lower()
    if not HASH_V1.fullmatch(lowered):
        raise RejectedEvent("bad_hash", "hash must be 40 hex characters (v1 info-hash)")
    return lowered


def parse_completed(raw: bytes, topic_seedbox: str) -> CompletionEvent:
    """Validate a v1 completion event; the topic's seedbox is authoritative."""
    data = decode_json(raw)
    version = data.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RejectedEvent("unsupported_version", f"'v' must be {PROTOCOL_VERSION}")
    event_id = text_field(data, "event_id", required=True)
    assert event_id is not None
    if not EVENT_ID.fullmatch(event_id):
        raise RejectedEvent("bad_event_id", "event_id must be 1-128 of [A-Za-z0-9._:-]")
    seedbox = text_field(data, "seedbox", required=False)
    if seedbox is not None and seedbox != topic_seedbox:
        raise RejectedEvent(
            "seedbox_mismatch", f"payload says {seedbox!r}, topic says {topic_seedbox!r}"
        )
    path = text_field(data, "path", required=True)
    assert path is not None
    name = text_field(data, "name", required=False) or path.rstrip("/").rsplit("/", 1)[-1]
    tags_raw = data.get("tags", [])
    if tags_raw is None:
        tags_raw = []
    if isinstance(tags_raw, str):
        tags_raw = [t.strip() for t in tags_raw.split(",") if t.strip()]
    if not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw):
        raise RejectedEvent("wrong_type", "'tags' must be a list of strings")
    size = integer_field(data, "size", 0, MAX_SIZE)
    completed_at = number_field(data, "completed_at", 0.0, MAX_TIMESTAMP)
    stream, seq = _sequence_fields(data, required=False)
    return CompletionEvent(
        event_id=event_id,
        seedbox=topic_seedbox,
        path=path,
        name=name,
        hash=normalise_hash(text_field(data, "hash", required=False)),
        client=text_field(data, "client", required=False),
        category=text_field(data, "category", required=False) or None,
        tags=tuple(tags_raw),
        tracker=text_field(data, "tracker", required=False) or None,
        size=size,
        type_code=text_field(data, "type", required=False) or None,
        completed_at=completed_at,
        stream=stream,
        seq=seq,
    )


def _sequence_fields(data: dict[str, Any], *, required: bool) -> tuple[str | None, int | None]:
    """`stream` and `seq`: both or neither (unless required)."""
    stream = text_field(data, "stream", required=required)
    seq = integer_field(data, "seq", 1, MAX_SAFE_INTEGER)
    if (stream is None) != (seq is None) or (required and seq is None):
        raise RejectedEvent("missing_field", "'stream' and 'seq' come together")
    if stream is not None and not STREAM_ID.fullmatch(stream):
        raise RejectedEvent("wrong_type", "'stream' must be 1-64 of [A-Za-z0-9_-]")
    return stream, seq


def parse_sequence(raw: bytes) -> tuple[str, int]:
    """A seedbox outbox's last sent number, `{"v": 1, "stream": ..., "seq": ...}`."""
    data = decode_json(raw)
    if type(data.get("v")) is not int or data["v"] != PROTOCOL_VERSION:
        raise RejectedEvent("unsupported_version", f"'v' must be {PROTOCOL_VERSION}")
    stream, seq = _sequence_fields(data, required=True)
    assert stream is not None and seq is not None
    return stream, seq


def sequence_in(raw: bytes) -> tuple[str, int] | None:
    """The (stream, seq) of a completion event that was rejected for another reason:
    it did arrive, and must not be reported as lost."""
    try:
        data = decode_json(raw)
        stream, seq = _sequence_fields(data, required=True)
    except RejectedEvent:
        return None
    assert stream is not None and seq is not None
    return stream, seq


def classic_hash(raw: bytes) -> str | None:
    """The info-hash a `Down` line names, read however the rest of the line fails its
    checks (a rejected line is still answered on `Label`); None if it names none."""
    fields = raw.split(b"\t", 2)
    if len(fields) < 2:
        return None
    try:
        return normalise_hash(fields[1].decode("ascii").strip())
    except (UnicodeDecodeError, RejectedEvent):
        return None


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
