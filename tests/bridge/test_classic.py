"""Q4D classic labels, without a broker: what one `Down` line commits to the outbox.

Q4D's hook has labelled the torrent QUEUED before the bridge sees the line, so the
bridge adds no classic QUEUED, and answers a line it rejects with NOPE, committed with
the rejection. The same through Mosquitto: tests/bridge/test_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.mqtt.events import classic_hash

from tests.bridge.test_fuzz import COMPLETED, REMOTE, make_bridge, message

HASH = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    bridge = make_bridge(tmp_path)
    try:
        yield bridge
    finally:
        bridge.store.close()


def outbox(bridge: Bridge, topic: str) -> list[bytes]:
    return [m.payload for _seq, m in bridge.store.outbox(1000) if m.topic == topic]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(f"/elsewhere/Show.S01\t{HASH}\tT", "unsafe_path", id="outside the roots"),
        pytest.param(f"{REMOTE}/../../etc\t{HASH}\tT", "unsafe_path", id="not normalised"),
        pytest.param(f"{REMOTE}\t{HASH}\tT", "unsafe_path", id="a root itself"),
        pytest.param(f"Show.S01\t{HASH.upper()}\t", "unsafe_path", id="relative, hash upper"),
        pytest.param(f"{REMOTE}/Show.S01\t{HASH}", "malformed", id="two fields"),
        pytest.param(f"\t{HASH}\tT", "missing_field", id="no path"),
        pytest.param(f"{REMOTE}/{'x' * 5000}\t {HASH} \tT", "too_large", id="path too long"),
    ],
)
async def test_a_rejected_line_is_answered_nope_with_its_rejection(
    bridge: Bridge, line: str, reason: str
) -> None:
    bridge.router.handle(message("Down", line.encode()))
    (rejected,) = bridge.store.rejected()
    assert (rejected["topic"], rejected["reason"]) == ("Down", reason)
    assert outbox(bridge, "Label") == [f"{HASH}\tNOPE".encode()]
    # Only the classic topic: the v1 label daemon never saw the torrent labelled.
    assert outbox(bridge, "q4d/seedbox/sb1/label") == []
    (notice,) = [json.loads(p) for p in outbox(bridge, "q4d/bridge/test/event")]
    assert (notice["event"], notice["reason"]) == ("rejected", reason)


async def test_a_rejected_line_that_is_not_utf8_is_answered_too(bridge: Bridge) -> None:
    bridge.router.handle(message("Down", f"{REMOTE}/caf\xe9\t{HASH}\tT".encode("latin-1")))
    assert bridge.store.rejected()[0]["reason"] == "malformed"
    assert outbox(bridge, "Label") == [f"{HASH}\tNOPE".encode()]


@pytest.mark.parametrize(
    "line",
    ["/elsewhere/x\tNotUsed\tT", "/elsewhere/x\tnot-a-hash\tT", "/elsewhere/x", ""],
)
async def test_no_nope_without_a_hash(bridge: Bridge, line: str) -> None:
    bridge.router.handle(message("Down", line.encode()))
    assert len(bridge.store.rejected()) == 1
    assert outbox(bridge, "Label") == []


async def test_a_rejected_v1_event_gets_no_label(bridge: Bridge) -> None:
    payload = {"v": 1, "event_id": "e1", "path": "/elsewhere/x", "hash": HASH}
    bridge.router.handle(message(COMPLETED, json.dumps(payload).encode()))
    assert bridge.store.rejected()[0]["reason"] == "unsafe_path"
    assert outbox(bridge, "Label") == outbox(bridge, "q4d/seedbox/sb1/label") == []


async def test_an_admitted_line_gets_no_second_queued(bridge: Bridge) -> None:
    bridge.router.handle(message("Down", f"{REMOTE}/Show.S01\t{HASH}\tT".encode()))
    assert len(bridge.lifecycle.items) == 1
    assert outbox(bridge, "Label") == []
    # q4d-labeld never saw Q4D's QUEUED: the v1 topic still gets it.
    (v1,) = [json.loads(p) for p in outbox(bridge, "q4d/seedbox/sb1/label")]
    assert (v1["hash"], v1["label"]) == (HASH, "QUEUED")


async def test_a_v1_event_still_gets_classic_queued(bridge: Bridge) -> None:
    payload = {"v": 1, "event_id": "e1", "path": f"{REMOTE}/Film", "hash": HASH}
    bridge.router.handle(message(COMPLETED, json.dumps(payload).encode()))
    assert len(bridge.lifecycle.items) == 1
    assert outbox(bridge, "Label") == [f"{HASH}\tQUEUED".encode()]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"/p\t{HASH.upper()}\tT\n".encode(), HASH),
        (f"/p\t{HASH}".encode(), HASH),
        (f"/p\t {HASH}\r\n".encode(), HASH),
        (b"/p\xff\t" + HASH.encode() + b"\tT", HASH),
        (b"/p\tNotUsed\tT", None),
        (b"/p\t-\tT", None),
        (b"/p\t\tT", None),
        (b"/p\t" + b"ab" * 32 + b"\tT", None),  # a v2 hash: refused, so never labelled
        (b"/p\t" + HASH.encode()[:-1] + b"\xe9\tT", None),
        (b"/p", None),
    ],
)
def test_classic_hash(raw: bytes, expected: str | None) -> None:
    assert classic_hash(raw) == expected
