"""Protocol v1 and Q4D-classic parsing: every malformed input is a named rejection."""

from __future__ import annotations

import json

import pytest
from q4d_bridge.models import Label
from q4d_bridge.protocol import (
    RejectedEvent,
    Topics,
    classic_label_payload,
    label_payload,
    parse_classic_down,
    parse_command,
    parse_completed,
)

HASH = "0123456789abcdef0123456789abcdef01234567"


def v1(**kw: object) -> bytes:
    payload: dict[str, object] = {"v": 1, "event_id": "ev-1", "path": "/data/x.mkv", "hash": HASH}
    payload.update(kw)
    return json.dumps(payload).encode()


def test_valid_event_fields() -> None:
    ev = parse_completed(
        v1(
            seedbox="sb1",
            hash=HASH.upper(),
            name="x.mkv",
            category="tv",
            tags=["a", "b"],
            tracker="t",
            size=5,
            type="T",
            completed_at=1700000000,
            unknown_future_field={"ignored": True},
        ),
        "sb1",
    )
    assert (ev.hash, ev.seedbox, ev.tags, ev.size, ev.type_code) == (
        HASH,
        "sb1",
        ("a", "b"),
        5,
        "T",
    )


def test_comma_separated_tags_and_null_hash() -> None:
    ev = parse_completed(v1(tags="a, b,", hash=None), "sb1")
    assert ev.tags == ("a", "b")
    assert ev.hash is None
    assert ev.name == "x.mkv"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"[1,2]", "malformed"),
        (b'"str"', "malformed"),
        (json.dumps({"event_id": "a", "path": "/x"}).encode(), "unsupported_version"),
        (v1(v=2), "unsupported_version"),
        (v1(event_id=None), "missing_field"),
        (v1(path=None), "missing_field"),
        (v1(path=""), "missing_field"),
        (v1(path=7), "wrong_type"),
        (v1(event_id="has space"), "bad_event_id"),
        (v1(hash="xyz"), "bad_hash"),
        (v1(tags=[1]), "wrong_type"),
        (v1(size=-1), "wrong_type"),
        (v1(size=True), "wrong_type"),
        (v1(size="10"), "wrong_type"),
        (v1(completed_at="yesterday"), "wrong_type"),
        (v1(seedbox="other"), "seedbox_mismatch"),
        (v1(name="x" * 5000), "too_large"),
        (b'{"v": 1, "event_id": "e", "path": "/data/\\udce9.mkv"}', "malformed"),  # lone surrogate
        (b'{"v": 1, "event_id": "e", "path": "/d/x", "tags": ["\\ud800"]}', "malformed"),
        (b"{" + b" " * (1024 * 1024) + b"}", "too_large"),
    ],
)
def test_rejections_have_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(RejectedEvent) as info:
        parse_completed(raw, "sb1")
    assert info.value.reason == reason


def test_classic_down() -> None:
    ev = parse_classic_down(f"/home/u/done/Show S01\t{HASH}\tT\n".encode(), "sb1")
    assert (ev.path, ev.hash, ev.type_code, ev.classic, ev.name) == (
        "/home/u/done/Show S01",
        HASH,
        "T",
        True,
        "Show S01",
    )
    again = parse_classic_down(f"/home/u/done/Show S01\t{HASH}\tT\n".encode(), "sb1")
    assert again.event_id == ev.event_id  # same line, same id: redelivery dedupes
    assert parse_classic_down(b"/p\tNotUsed\tV", "sb1").hash is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"/only/path", "malformed"), (b"\t" + HASH.encode() + b"\tT", "missing_field"),
     (b"/p\tbad\tT", "bad_hash"), (b"\xff\tx\ty", "malformed")],
)  # fmt: skip
def test_classic_rejections(raw: bytes, reason: str) -> None:
    with pytest.raises(RejectedEvent) as info:
        parse_classic_down(raw, "sb1")
    assert info.value.reason == reason


def test_labels() -> None:
    assert json.loads(label_payload(HASH, Label.DONE)) == {
        "v": 1,
        "hash": HASH,
        "label": "DONE",
        "mode": "tag",
    }
    assert classic_label_payload(HASH, Label.FAILED) == f"{HASH}\tNOPE".encode()
    assert classic_label_payload(HASH, Label.QUEUED) == f"{HASH}\tQUEUED".encode()


def test_topics() -> None:
    t = Topics("home/q4d", "b1")
    assert t.seedbox_of("home/q4d/seedbox/sb1/completed") == "sb1"
    assert t.seedbox_of("q4d/seedbox/sb1/completed") is None
    assert t.item("abc") == "home/q4d/bridge/b1/item/abc"
    assert t.command_result == "home/q4d/bridge/b1/command/result"


def test_parse_command() -> None:
    cmd = parse_command(b'{"id": "r1", "op": "retry", "args": {"item_id": "x"}}')
    assert (cmd.id, cmd.op, cmd.args) == ("r1", "retry", {"item_id": "x"})
    for bad in (b'{"op": "retry"}', b'{"id": "r", "op": 3}', b'{"id": "r", "op": "x", "args": []}'):
        with pytest.raises(RejectedEvent):
            parse_command(bad)
