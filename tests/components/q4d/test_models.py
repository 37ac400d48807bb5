"""Parsing of the bridge's payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custom_components.q4d.models import (
    ITEM_STATUSES,
    BridgeState,
    CommandResult,
    Destination,
    DispatchState,
    Item,
    PayloadError,
    SshLink,
    decode,
)

from .payloads import ITEM_1, NOW, item_dict, state_dict

STRINGS = Path(__file__).resolve().parents[3] / "custom_components" / "q4d" / "strings.json"


def test_lenient_about_optional_fields() -> None:
    """Fields of the wrong type fall back to defaults instead of failing the payload."""
    data = state_dict(
        counts={"queued": "many", "failed": True, "done": 2.0, "verifying": 1},
        totals=None,
        limits={"max_concurrent": "3", "bandwidth_limit": None},
        active=None,
        last_completed=None,
    )
    data["seedboxes"]["junk"] = "not an object"
    parsed = BridgeState.from_payload(json.dumps(data))
    assert parsed.counts["queued"] == 0
    assert parsed.counts["failed"] == 0
    assert parsed.counts["done"] == 2
    assert parsed.active == 1  # transferring + verifying, when `active` is missing
    assert parsed.totals == {}
    assert parsed.max_concurrent is None
    assert parsed.last_completed is None
    assert set(parsed.seedboxes) == {"seedbox1", "seedbox2"}
    assert parsed.total_items == 3  # 2 done + 1 verifying


def test_item_fields() -> None:
    """Items keep the raw payload, and tolerate odd optional fields."""
    parsed = Item.from_dict(item_dict(tags="hd", error="boom", size=True))
    assert parsed.tags == []
    assert parsed.error_code is None
    assert parsed.size is None
    assert parsed.duration is None
    assert parsed.raw["tags"] == "hd"
    assert not parsed.finished


@pytest.mark.parametrize("payload", ["", "nope", "[]", '{"v": 2}', '{"v": 1, "ok": "yes"}'])
def test_command_result_invalid(payload: str) -> None:
    """Results that are not results are refused."""
    with pytest.raises(PayloadError):
        CommandResult.from_payload(payload)


def test_decode_without_version() -> None:
    """Command results and events may omit `v`."""
    assert decode('{"ok": true}') == {"ok": True}


def test_decode_what_only_python_reads() -> None:
    """Payloads Python's parser reads and orjson refuses are read as before."""
    assert decode('{"v": 1, "rate": NaN, "size": 18446744073709551616}')["size"] == 1 << 64
    with pytest.raises(PayloadError, match="not JSON"):
        decode('{"v": 1, "rate": }')


@pytest.mark.parametrize(
    ("changes", "progress"),
    [
        ({}, frozenset()),
        ({"progress": 40.0, "eta": 9.0}, frozenset({"progress", "eta"})),
        (
            {"progress": 40.0, "rate": 1.0, "bytes_done": 5, "updated_at": NOW + 20},
            frozenset({"progress", "rate", "bytes_done", "updated_at"}),
        ),
        ({"progress": 40.0, "state": "verifying"}, None),
        ({"hash": "other"}, None),  # a field this integration does not read counts too
        ({"speed": 5.0}, None),  # a field that came
    ],
)
def test_progress_changes(changes: dict[str, object], progress: frozenset[str] | None) -> None:
    """Only updates that change progress fields alone name them; anything else is None."""
    payload = item_dict(ITEM_1, "transferring", progress=35.0, eta=18.6)
    before = Item.from_dict(payload)
    after = Item.from_dict({**payload, **changes})
    assert after.progress_changes(before) == progress
    assert after.progress_changes(None) is None


def test_older_bridge_state() -> None:
    """A state without destinations, client or ssh (older bridges) parses."""
    data = state_dict()
    del data["destinations"]
    for box in data["seedboxes"].values():
        del box["client"], box["ssh"]
    parsed = BridgeState.from_payload(json.dumps(data))
    assert parsed.destinations == {}
    assert all(sb.client is None and sb.ssh is None for sb in parsed.seedboxes.values())


def test_new_state_fields() -> None:
    """Destinations and SSH links, with odd values tolerated."""
    data = state_dict(
        destinations={
            "tv": {"free_space": 5, "min_free_space": 10},
            "movies": {"free_space": "lots"},
            "junk": None,
        }
    )
    data["seedboxes"]["seedbox1"]["ssh"] = {"connected": "yes", "error": 3}
    parsed = BridgeState.from_payload(json.dumps(data))
    assert parsed.destinations == {
        "tv": Destination(name="tv", free_space=5, min_free_space=10),
        "movies": Destination(name="movies", free_space=None, min_free_space=None),
    }
    assert parsed.destinations["tv"].short_of_space
    assert not parsed.destinations["movies"].short_of_space
    assert parsed.seedboxes["seedbox1"].ssh == SshLink(connected=False, error=None, checked_at=None)


@pytest.mark.parametrize(
    ("error", "mismatch"),
    [
        ("host_key_mismatch: Host key is not trusted", True),
        ("host_key_mismatch", False),
        ("connection: host_key_mismatch: no", False),
        (None, False),
    ],
)
def test_ssh_host_key_mismatch(error: str | None, mismatch: bool) -> None:
    """Only an error with the host_key_mismatch code counts."""
    link = SshLink(connected=False, error=error, checked_at=NOW)
    assert link.host_key_mismatch is mismatch


@pytest.mark.parametrize(
    ("breaker", "until", "open_at_now"),
    [("open", NOW + 1, True), ("open", NOW, False), ("open", None, True), ("closed", None, False)],
)
def test_breaker_open_at(breaker: str, until: float | None, open_at_now: bool) -> None:
    """An open breaker counts as open only until its cool-down ends."""
    data = state_dict()
    data["seedboxes"]["seedbox1"].update(breaker=breaker, breaker_until=until)
    parsed = BridgeState.from_payload(json.dumps(data)).seedboxes["seedbox1"]
    assert parsed.breaker_open_at(NOW) is open_at_now


PAUSED_STATE = BridgeState.from_payload(json.dumps(state_dict(paused=True)))
RUNNING_STATE = BridgeState.from_payload(json.dumps(state_dict()))
BREAKER = state_dict()
BREAKER["seedboxes"]["seedbox1"].update(breaker="open", breaker_until=NOW + 60)
BREAKER_STATE = BridgeState.from_payload(json.dumps(BREAKER))
SPACE = {"code": "insufficient_space", "message": "8.0 GiB needed, 512.0 MiB free"}


@pytest.mark.parametrize(
    ("state", "fields", "bridge", "status"),
    [
        ("queued", {}, RUNNING_STATE, "queued"),
        ("queued", {}, None, "queued"),
        ("queued", {"paused": True}, RUNNING_STATE, "paused"),
        ("queued", {"held": "queue"}, RUNNING_STATE, "paused"),
        ("queued", {"held": "something new"}, RUNNING_STATE, "queued"),
        ("queued", {}, PAUSED_STATE, "paused"),
        ("waiting", {}, PAUSED_STATE, "paused"),
        ("waiting", {"error": SPACE}, RUNNING_STATE, "waiting_for_space"),
        ("waiting", {"error": SPACE, "paused": True}, RUNNING_STATE, "paused"),
        ("waiting", {"error": {"code": "connection", "message": "x"}}, RUNNING_STATE, "waiting"),
        ("queued", {}, BREAKER_STATE, "on_hold"),
        ("waiting", {}, BREAKER_STATE, "on_hold"),
        ("queued", {"seedbox": "seedbox2"}, BREAKER_STATE, "queued"),
        ("queued", {"seedbox": "gone"}, BREAKER_STATE, "queued"),
        ("transferring", {}, PAUSED_STATE, "transferring"),
        ("verifying", {"paused": True}, PAUSED_STATE, "verifying"),
        ("done", {"paused": True}, PAUSED_STATE, "done"),
        ("failed", {}, BREAKER_STATE, "failed"),
        ("cancelled", {}, RUNNING_STATE, "cancelled"),
    ],
)
def test_item_status(
    state: str, fields: dict[str, object], bridge: BridgeState | None, status: str
) -> None:
    """Queued and waiting items say why they do not start; the others show their state."""
    item = Item.from_dict(item_dict(state=state, **fields))
    assert item.status(bridge, NOW) == status
    assert status in ITEM_STATUSES


def test_item_status_breaker_cooled_down() -> None:
    """A breaker whose cool-down has ended holds nothing."""
    item = Item.from_dict(item_dict())
    assert item.status(BREAKER_STATE, NOW + 60) == "queued"


def test_held() -> None:
    """`held` is read when a (newer) bridge sends it, and None otherwise."""
    assert Item.from_dict(item_dict(held="queue")).held == "queue"
    assert Item.from_dict(item_dict(held=3)).held is None
    assert Item.from_dict(item_dict()).held is None


@pytest.mark.parametrize(
    ("state", "refusals"),
    [
        ("queued", {"retry": "retry_unfinished"}),
        ("transferring", {"retry": "retry_unfinished"}),
        (
            "verifying",
            {"retry": "retry_unfinished", "cancel": "cancel_verifying", "pause": "pause_verifying"},
        ),
        ("processing", {"retry": "retry_unfinished", "pause": "pause_processing"}),
        ("waiting", {}),
        (
            "done",
            {
                "retry": "retry_done",  # unless forced
                "cancel": "cancel_finished",
                "pause": "pause_finished",
                "resume": "resume_finished",
            },
        ),
        (
            "failed",
            {"cancel": "cancel_finished", "pause": "pause_finished", "resume": "resume_finished"},
        ),
        (
            "cancelled",
            {"cancel": "cancel_finished", "pause": "pause_finished", "resume": "resume_finished"},
        ),
    ],
)
def test_item_refusal(state: str, refusals: dict[str, str]) -> None:
    """The commands the bridge would refuse, by state, each with a translated reason."""
    item = Item.from_dict(item_dict(state=state))
    exceptions = json.loads(STRINGS.read_text())["exceptions"]
    for op in ("retry", "cancel", "pause", "resume", "set_priority"):
        assert item.refusal(op) == refusals.get(op), op
        if op in refusals:
            assert "{name}" in exceptions[refusals[op]]["message"]
    assert item.refusal("retry", force=True) == (
        None if state in ("done", "failed", "cancelled", "waiting") else "retry_unfinished"
    )


@pytest.mark.parametrize(
    ("fields", "is_request"),
    [
        ({"state": "requested"}, True),
        ({"state": "downloading", "request_id": ITEM_1}, True),
        # failed before its download reached the queue: still under the request's id
        ({"state": "failed", "request_id": ITEM_1}, True),
        # the queue item a request became: an id of its own
        ({"state": "queued", "request_id": "5eed5eed5eed5eed"}, False),
        ({"state": "failed", "request_id": "5eed5eed5eed5eed"}, False),
        ({"state": "done"}, False),
    ],
)
def test_torrent_requests(fields: dict[str, object], is_request: bool) -> None:
    """Requests come as items; none of the queue's commands apply to them."""
    item = Item.from_dict(item_dict(ITEM_1, **fields))
    assert item.is_request == is_request
    assert item.request_id == fields.get("request_id")
    assert item.summary()["request_id"] == fields.get("request_id")
    if is_request:
        assert {item.refusal(op) for op in ("retry", "cancel", "pause", "set_priority")} == {
            "not_queued"
        }
    with pytest.raises(PayloadError):
        Item.from_dict(item_dict(state="added"))  # a request's own state, never an item's


def test_dispatch_fields() -> None:
    """A client's type, version and dispatch scoring, with odd values tolerated; requests
    are counted."""
    data = state_dict(counts={"queued": 1, "requested": 2, "downloading": 3})
    client = data["seedboxes"]["seedbox1"]["client"]
    client.update(type=7, version=None)
    client["dispatch"].update(score="high", eligible="yes", reason=None)
    parsed = BridgeState.from_payload(json.dumps(data))
    stats = parsed.seedboxes["seedbox1"].client
    assert stats is not None
    assert (stats.type, stats.version) == (None, None)
    assert stats.dispatch == DispatchState(
        enabled=True, score=None, eligible=None, reason_code="eligible", reason=None
    )
    assert parsed.counts["requested"] == 2
    assert parsed.counts["downloading"] == 3
    assert parsed.total_items == 6
    client["dispatch"] = "scored"
    assert BridgeState.from_payload(json.dumps(data)).seedboxes["seedbox1"].client.dispatch is None
