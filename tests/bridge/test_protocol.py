"""Protocol v1 and Q4D-classic parsing: every malformed input is a named rejection."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from q4d_bridge.models import ItemState, Label
from q4d_bridge.mqtt.codec import RejectedEvent
from q4d_bridge.mqtt.commands import CommandError, execute, parse_command
from q4d_bridge.mqtt.events import parse_classic_down, parse_completed, parse_sequence, sequence_in
from q4d_bridge.mqtt.payloads import classic_label_payload, label_payload
from q4d_bridge.mqtt.topics import Topics

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
        (v1(event_id="ev-1\n"), "bad_event_id"),  # `$` would let a trailing newline in
        (v1(hash=HASH + "\n"), "bad_hash"),
        (v1(stream="s1"), "missing_field"),
        (v1(seq=3), "missing_field"),
        (v1(stream="s1", seq=0), "wrong_type"),
        (v1(stream="s1", seq=2**53), "wrong_type"),
        (v1(stream="s1", seq=True), "wrong_type"),
        (v1(stream="s 1", seq=1), "wrong_type"),
        (v1(stream="s1\n", seq=1), "wrong_type"),
        (v1(stream="", seq=1), "wrong_type"),
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


def test_sequence_numbers() -> None:
    ev = parse_completed(v1(stream="41c537bc860bd2b0", seq=7), "sb1")
    assert (ev.stream, ev.seq) == ("41c537bc860bd2b0", 7)
    assert (parse_completed(v1(), "sb1").stream, parse_completed(v1(), "sb1").seq) == (None, None)
    assert parse_sequence(b'{"v": 1, "stream": "s1", "seq": 2000}') == ("s1", 2000)
    for bad in (b'{"v": 1, "stream": "s1"}', b'{"v": 2, "stream": "s1", "seq": 1}', b"[]"):
        with pytest.raises(RejectedEvent):
            parse_sequence(bad)
    # A rejected event's number still counts as arrived; an unnumbered one has none.
    assert sequence_in(v1(path="relative", stream="s1", seq=5)) == ("s1", 5)
    assert sequence_in(v1()) is None
    assert sequence_in(b"not json") is None


def test_topics() -> None:
    t = Topics("home/q4d", "b1")
    assert t.seedbox_of("home/q4d/seedbox/sb1/completed") == "sb1"
    assert t.seedbox_of("home/q4d/seedbox/sb1/sequence") is None
    assert t.seedbox_of("home/q4d/seedbox/sb1/sequence", "sequence") == "sb1"
    assert t.seedbox_of("home/q4d/bridge/sb1/completed") is None
    assert t.seedbox_of("q4d/seedbox/sb1/completed") is None
    assert t.item("abc") == "home/q4d/bridge/b1/item/abc"
    assert t.command_result == "home/q4d/bridge/b1/command/result"


def test_parse_command() -> None:
    cmd = parse_command(b'{"id": "r1", "op": "retry", "args": {"item_id": "x"}}')
    assert (cmd.id, cmd.op, cmd.args) == ("r1", "retry", {"item_id": "x"})
    for bad in (b'{"op": "retry"}', b'{"id": "r", "op": 3}', b'{"id": "r", "op": "x", "args": []}'):
        with pytest.raises(RejectedEvent):
            parse_command(bad)


# --- limits: what reached the internal-error path before (issue 12) --------------------


def deep(levels: int, *, objects: bool = False) -> str:
    return '{"a":' * levels + "1" + "}" * levels if objects else "[" * levels + "]" * levels


def with_raw(field: str, literal: str) -> bytes:
    """A valid event whose `field` is the JSON text `literal`, verbatim."""
    return v1()[:-1] + f', "{field}": {literal}}}'.encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (deep(5000).encode(), "too_large"),  # RecursionError past ~9000 before
        (with_raw("extra", deep(20000)), "too_large"),
        (with_raw("extra", deep(5000, objects=True)), "too_large"),
        (with_raw("tags", deep(32)), "too_large"),  # 33 with the event object
        (with_raw("tags", "[" * 40), "too_large"),  # unbalanced, deep before it is invalid
        (with_raw("size", "9" * 5000), "too_large"),  # int() refuses over 4300 digits
        (with_raw("extra", "-" + "1" * 4400), "too_large"),
        (with_raw("extra", "1" * 65), "too_large"),
        (with_raw("extra", "0." + "1" * 63), "too_large"),
        (with_raw("v", "1" + "0" * 5000), "too_large"),
        (v1(size=2**63), "wrong_type"),  # OverflowError in SQLite before
        (v1(size=2**63 - 1), "wrong_type"),
        (v1(size=2**53), "wrong_type"),
        (v1(size=1.0), "wrong_type"),
        (v1(completed_at=10**40), "wrong_type"),  # OverflowError converting to float before
        (v1(completed_at=2.0**53), "wrong_type"),
        (v1(completed_at=-1), "wrong_type"),
        (v1(completed_at=True), "wrong_type"),
        (with_raw("completed_at", "1e400"), "wrong_type"),
        (with_raw("completed_at", "NaN"), "wrong_type"),
        (with_raw("completed_at", "-Infinity"), "wrong_type"),
        (b"[" * 33 + b'"' + b"]" * 33, "too_large"),
        (b"[]" * 40, "malformed"),  # many brackets, shallow: the parser decides
        (b"]" * 40, "malformed"),
    ],
)
def test_limits_have_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(RejectedEvent) as info:
        parse_completed(raw, "sb1")
    assert info.value.reason == reason, info.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        with_raw("extra", deep(31)),  # 32 levels with the event object: the limit
        with_raw("extra", deep(15, objects=True)),
        with_raw("extra", "1" * 64),  # 64 characters: the limit
        with_raw("extra", "1e400"),  # unknown fields are not checked
        v1(name="[" * 100 + "{" * 100),  # brackets inside strings do not nest
        v1(name='\\"[' * 100),
        v1(size=2**53 - 1, completed_at=2**53 - 1),
        v1(size=0, completed_at=0),
        v1(completed_at=1699999990.123),
        v1(name="\U0001f3ac"),  # a surrogate pair, escaped, is one valid character
        with_raw("name", '"\\\\ud800"'),  # an escaped backslash, then "ud800": no surrogate
    ],
)
def test_within_limits(raw: bytes) -> None:
    parse_completed(raw, "sb1")


STRING_FIELDS = ("event_id", "path", "seedbox", "hash", "name", "client", "category",
                 "tracker", "type")  # fmt: skip


@pytest.mark.parametrize(
    "payload",
    [
        *({"v": 1, "event_id": "e", "path": "/d/x", field: "a\udce9"} for field in STRING_FIELDS),
        {"v": 1, "event_id": "e", "path": "/d/x", "tags": ["ok", "\ud800"]},
        {"v": 1, "event_id": "e", "path": "/d/x", "tags": "ok,\udfff"},
        {"v": 1, "event_id": "e", "path": "/d/x", "extra": {"deeper": ["\udc00"]}},
        {"v": 1, "event_id": "e", "path": "/d/x", "\ud800key": 1},
        {"v": "\ud800"},
    ],
)
def test_lone_surrogate_anywhere_is_malformed(payload: dict[str, object]) -> None:
    raw = json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as "\\udXXX"
    with pytest.raises(RejectedEvent) as info:
        parse_completed(raw, "sb1")
    assert (info.value.reason, info.value.detail) == (
        "malformed",
        "payload contains invalid Unicode",
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "c", "op": "pause", "args": {"x": ' + deep(40).encode() + b"}}", "too_large"),
        (b'{"id": "c", "op": "set_limits", "args": {"bandwidth_limit": 1' + b"0" * 5000 + b"}}",
         "too_large"),
        (b'{"id": "c\\ud800", "op": "pause"}', "malformed"),
        (b'{"id": "c", "op": "pause", "args": {"\\udc00": 1}}', "malformed"),
        (deep(3000).encode(), "too_large"),
    ],
)  # fmt: skip
def test_command_limits(raw: bytes, reason: str) -> None:
    with pytest.raises(RejectedEvent) as info:
        parse_command(raw)
    assert info.value.reason == reason


class _Controller:
    """Records what reaches the controller: nothing must, for invalid arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., object]:
        def call(*args: object) -> object:
            self.calls.append((name, args))
            return {} if name == "set_limits" else []

        return call


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        ("set_limits", {"max_concurrent": True}, "expected int"),  # was accepted as 1
        ("set_limits", {"max_concurrent": 2.0}, "expected int"),
        ("set_limits", {"max_concurrent": 257}, "at most 256"),
        ("set_limits", {"bandwidth_limit": False}, "expected int"),
        ("set_limits", {"bandwidth_limit": 2**40 + 1}, "at most 1099511627776"),
        ("set_limits", {"bandwidth_limit": 2**63}, "at most 1099511627776"),  # was accepted
        ("set_limits", {"bandwidth_limit": -1}, "at least 0"),
        ("set_priority", {"item_id": "0" * 16, "priority": True}, "expected int"),
        ("set_priority", {"item_id": "0" * 16, "priority": 10**30}, "at most 100"),
        ("set_priority", {"item_id": "0" * 16, "priority": -101}, "at least -100"),
        ("get_queue", {"states": [["queued"]]}, "expected str"),
        ("get_queue", {"limit": 0}, "at least 1"),
        ("get_queue", {"limit": 10_001}, "at most 10000"),
        ("get_queue", {"limit": True}, "expected int"),
        ("get_queue", {"offset": -1}, "at least 0"),
        ("get_queue", {"offset": 2.0}, "expected int"),
        ("rescan", {"seedbox": 7}, "expected str"),
    ],
)
def test_command_args_are_bounded(op: str, args: dict[str, object], message: str) -> None:
    controller = _Controller()
    with pytest.raises(CommandError) as info:
        execute(controller, op, args)
    assert info.value.code == "invalid_args"
    assert message in info.value.message
    assert controller.calls == []


def test_command_args_at_the_bounds() -> None:
    controller = _Controller()
    execute(controller, "set_limits", {"bandwidth_limit": 2**40, "max_concurrent": 256})
    execute(controller, "set_priority", {"item_id": "0" * 16, "priority": -100})
    execute(controller, "get_queue", {})
    execute(controller, "get_queue", {"limit": 1, "offset": 0})
    execute(controller, "get_queue", {"states": ["done"], "limit": 10_000, "offset": 10**9})
    assert controller.calls == [
        ("set_limits", (2**40, 256)),
        ("set_priority", ("0" * 16, -100)),
        ("get_queue", (None, 500, 0)),  # the default page
        ("get_queue", (None, 1, 0)),
        ("get_queue", ([ItemState.DONE], 10_000, 10**9)),
    ]
