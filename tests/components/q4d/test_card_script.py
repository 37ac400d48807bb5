"""The transfers card's script on its own, in Node: how it shows torrent requests (the
rows, their buttons, their order and their count). tests/demo/test_card.py runs the
whole card in a browser against a real bridge."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from custom_components.q4d.card import CARD_PATH

# Just enough of a browser for the card's class to load and render rows as text.
HARNESS = """
globalThis.HTMLElement = class { attachShadow() { this.shadowRoot = {}; return this.shadowRoot; } };
globalThis.customElements = { whenDefined: () => new Promise(() => {}) };
const { Q4dTransfersCard, actions } = await import(process.argv[2]);
const cases = JSON.parse(process.argv[3]);
const card = new Q4dTransfersCard();
const bridge = cases.bridge;
card._bridge = bridge;
card._items = new Map(cases.items.map((item) => [item.id, item]));
const out = {
  order: card._active().map((item) => item.id),
  rows: Object.fromEntries(cases.items.map((item) => [item.id, {
    actions: actions(item),
    state: card._stateText(item, bridge),
    html: item.state === "failed" ? card._historyRow(item) : card._activeRow(item, bridge),
  }])),
  summary: card._summary(bridge),
  summary_without: card._summary({ ...bridge, counts: { queued: 1 } }),
};
console.log(JSON.stringify(out));
"""


def summary(item_id: str, state: str, **fields: Any) -> dict[str, Any]:
    """An item as the websocket feed sends it (websocket_api.item_summary)."""
    values: dict[str, Any] = {
        "id": item_id,
        "name": f"{item_id}.mkv",
        "seedbox": "seedbox1",
        "destination": "tv",
        "local_path": None,
        "state": state,
        "paused": False,
        "priority": 0,
        "size": 1_500_000_000,
        "bytes_done": 0,
        "progress": 0.0,
        "rate": 0.0,
        "eta": None,
        "attempts": 0,
        "error_code": None,
        "error": None,
        "received_at": 1700000000.0,
        "started_at": None,
        "finished_at": None,
        "next_attempt_at": None,
        "duration": None,
        "request_id": None,
        "request": False,
    }
    values.update(fields)
    return values


def request(item_id: str, state: str, **fields: Any) -> dict[str, Any]:
    """A torrent request's row."""
    return summary(item_id, state, destination=None, request_id=item_id, request=True, **fields)


@pytest.fixture
def card(tmp_path: Path) -> Any:
    """Runs the card's script in Node; what it rendered."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    module = tmp_path / "card.mjs"
    module.write_text(CARD_PATH.read_text() + "\nexport { Q4dTransfersCard, actions };\n")
    harness = tmp_path / "harness.mjs"
    harness.write_text(HARNESS)

    def run(cases: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            [node, str(harness), module.as_uri(), json.dumps(cases)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    return run


def test_torrent_requests(card: Any) -> None:
    """Requests show after the queue with their seedbox progress and no buttons; the
    queue item a request became has its buttons; the summary counts the requests."""
    bridge = {
        "name": "Home media bridge",
        "online": True,
        "paused": False,
        "counts": {"queued": 1, "transferring": 1, "requested": 1, "downloading": 2},
        "rate": 0.0,
        "bandwidth_limit": None,
        "seedboxes": {"seedbox1": "My seedbox"},
    }
    error = "qBittorrent refused the torrent"
    out = card(
        {
            "bridge": bridge,
            "items": [
                request("r-requested", "requested"),
                request(
                    "r-downloading",
                    "downloading",
                    progress=50.0,
                    bytes_done=750_000_000,
                    rate=4_194_304.0,
                    eta=178.8,
                ),
                request("r-paused", "downloading", paused=True, progress=10.0),
                summary("queued", "queued", request_id="r-earlier"),
                summary("transferring", "transferring", progress=20.0),
                request("r-failed", "failed", error=error, finished_at=1700000100.0),
            ],
        }
    )
    assert out["order"] == ["transferring", "queued", "r-downloading", "r-paused", "r-requested"]
    rows = out["rows"]
    assert rows["r-requested"]["state"] == ["Requested", ""]
    assert rows["r-downloading"]["state"] == ["Downloading on seedbox", "busy"]
    assert rows["r-paused"]["state"] == ["Paused on seedbox", "paused"]
    assert rows["r-failed"]["state"] == [f"Request failed: {error}", "bad"]
    for row in ("r-requested", "r-downloading", "r-paused", "r-failed"):
        assert rows[row]["actions"] == [], row
    assert rows["queued"]["actions"] == ["pause", "up", "down", "cancel"]

    downloading = rows["r-downloading"]["html"]
    assert '<div style="width:50%">' in downloading
    assert "50 % · 4.2 MB/s · 2 min 59 s left · 750 MB of 1.5 GB" in downloading
    assert "My seedbox</div>" in downloading  # no destination yet
    assert "Request failed: qBittorrent refused the torrent" in rows["r-failed"]["html"]

    assert "<b>3</b> on seedbox" in out["summary"]
    assert "on seedbox" not in out["summary_without"]
