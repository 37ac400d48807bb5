"""Parsing of the bridge's payloads."""

from __future__ import annotations

import json

import pytest

from custom_components.q4d.models import BridgeState, CommandResult, Item, PayloadError, decode

from .payloads import item_dict, state_dict


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
