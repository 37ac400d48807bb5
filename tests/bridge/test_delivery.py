"""At-least-once from the seedbox's hook to the bridge's queue, when the broker holds
the events for a bridge that is away.

Mosquitto keeps at most `max_queued_messages` (1000 by default) for a disconnected
client and drops the rest after the hook already had its PUBACK. With the broker
settings q4d documents every event arrives; with the defaults the bridge knows what is
missing, from the numbers the hook stamps on its events, says so, and asks the torrent
client (reconciliation)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import q4d_bridge.intake.intake
import q4d_bridge.intake.sequence

from tests.bridge.test_e2e import Env, running_bridge
from tests.bridge.test_nodes import seeded
from tests.conftest import allow_loopback_sockets
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Q4D_BROKER_SETTINGS, Mosquitto, SshServer, free_port
from tests.seedbox.support import write_config

pytestmark = pytest.mark.timeout(240)
EVENTS = 2000


def hook_config(tmp_path: Path, port: int) -> Path:
    return write_config(
        tmp_path / f"seedbox-{port}.conf",
        {
            "mqtt": {"host": "127.0.0.1", "port": port, "seedbox_id": "sb1"},
            "hook": {"outbox": tmp_path / "outbox", "log_file": tmp_path / "hook.log"},
        },
    )


@pytest.fixture(scope="module")
def away(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """EVENTS completions through the real hook, made once for this module's tests:
    each written to the hook's outbox while its broker is unreachable (so none is sent
    early). Returns the seedbox folder they are in and that outbox."""
    from q4d_seedbox import hook

    allow_loopback_sockets()  # module scope: before the per-test fixture allows them
    root = tmp_path_factory.mktemp("away")
    remote = root / "seedbox"
    offline = str(hook_config(root, free_port()))
    for n in range(EVENTS):
        path = str(remote / f"Show.S01E{n:04}.mkv")
        assert hook.main(["--config", offline, "qbittorrent", f"{n:040x}", path, path]) == 0
    return remote, root / "outbox"


def flush(away: tuple[Path, Path], tmp_path: Path, broker_port: int) -> None:
    """The hook's `flush` of a copy of that outbox, as when the broker is reachable again."""
    from q4d_seedbox import hook

    shutil.copytree(away[1], tmp_path / "outbox")
    assert hook.main(["--config", str(hook_config(tmp_path, broker_port)), "flush"]) == 0


async def arrived(env: Env, settle: float = 3.0) -> int:
    """Events the bridge took in (queued, duplicate or rejected), once they stop coming."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        counters = env.bridge.store.counters()
        now = sum(counters.get(k, 0) for k in ("received", "duplicates", "rejected"))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > settle:
            return now
        await asyncio.sleep(0.2)
    raise AssertionError("events kept arriving for 90 s")


async def away_then_back(
    away: tuple[Path, Path], tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """The bridge subscribes once (its persistent session) and goes away; the seedbox
    flushes EVENTS completions; the bridge comes back. Returns how many arrived, what
    it reported lost and its state."""
    seedbox = {"remote_roots": [str(away[0])]}
    async with running_bridge(tmp_path, mosquitto, sshd, seedbox=seedbox) as env:
        env.bridge.controller.pause(None)  # only the intake matters here
    flush(away, tmp_path, mosquitto.port)
    # The recorder hears only events: a listener to everything falls behind on a busy
    # machine, and this broker drops what queues up for it too, the report included.
    events = ("+/bridge/+/event",)
    async with running_bridge(tmp_path, mosquitto, sshd, seedbox=seedbox, recorded=events) as env:
        count = await arrived(env)
        await env.recorder.wait_for(
            lambda: env.recorder.events("events_lost") or count == EVENTS, 20, "the gap report"
        )
        await asyncio.sleep(1.5)  # one more look: nothing else is reported
        return count, env.recorder.events("events_lost"), env.bridge.state().as_dict()


@pytest.fixture(autouse=True)
def _quick_gap_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(q4d_bridge.intake.sequence, "GRACE", 2.0)
    monkeypatch.setattr(q4d_bridge.intake.intake, "SEQUENCE_CHECK", 0.5)


async def test_default_broker_drops_events_and_the_bridge_reports_them(
    away: tuple[Path, Path], tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    count, lost, state = await away_then_back(away, tmp_path, mosquitto, sshd)
    print(f"\ndefault mosquitto: {count} of {EVENTS} completions arrived")
    assert count < EVENTS  # what the broker's own default does
    assert "Outgoing messages are being dropped" in mosquitto.log()
    assert sum(e["count"] for e in lost) == EVENTS - count
    assert lost[-1]["last"] == EVENTS and lost[0]["seedbox"] == "sb1"
    assert state["seedboxes"]["sb1"]["lost_events"] == EVENTS - count


async def test_documented_broker_settings_deliver_every_event(
    away: tuple[Path, Path], tmp_path: Path, sshd: SshServer
) -> None:
    with Mosquitto(
        tmp_path / "mosquitto", extra_config=Q4D_BROKER_SETTINGS, persistent=True
    ) as broker:
        count, lost, state = await away_then_back(away, tmp_path, broker, sshd)
    print(f"\nmosquitto as documented: {count} of {EVENTS} completions arrived")
    assert (count, lost, state["seedboxes"]["sb1"]["lost_events"]) == (EVENTS, [], 0)


async def test_a_lost_event_sends_the_bridge_to_the_torrent_client(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Events 1 and 3 arrive, 2 never does: the gap is reported and the seedbox's
    qBittorrent is asked for completed torrents, which is where event 2's is."""
    made = tmp_path / "made"
    made.mkdir()
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password}  # fmt: skip
        seedbox = {"client": client, "reconcile": {"interval": 0}}  # only the report asks
        async with running_bridge(tmp_path, mosquitto, sshd, seedbox=seedbox) as env:
            env.bridge.controller.pause(None)
            lost = await seeded(qbt, env.remote, "Lost.Episode.mkv", made, 1)
            for seq in (1, 3):
                await env.complete(f"e{seq}.mkv", f"{seq:040x}", stream="s1", seq=seq)
            await env.recorder.wait_for(lambda: env.recorder.events("events_lost"), 20, "report")
            [report] = env.recorder.events("events_lost")
            assert (report["count"], report["first"], report["last"]) == (1, 2, 2)
            await env.recorder.wait_for(
                lambda: any(i.hash == lost for i in env.bridge.lifecycle.items.values()),
                30, "the torrent found by reconciliation",
            )  # fmt: skip


def test_the_documented_settings_are_the_tested_ones() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = docs.split("### Broker settings", 1)[1].split("\n## ", 1)[0]
    for line in (*Q4D_BROKER_SETTINGS, "persistence true"):
        assert f"\n{line}\n" in section
