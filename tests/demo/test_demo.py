"""The demo end to end: `./scripts/demo --headless` as a user runs it (set-up included),
then checks of our own on what it left behind: every sample torrent's payload in
demo/library/<category>/ byte-identical to the seeder's copy, the seedbox qBittorrent's
saved state tagging each torrent q4d:DONE, Home Assistant's registries holding the q4d
entry (from MQTT discovery), the demo user and the item entities, what Home Assistant's
websocket API showed (each item's status sensor paused -> transferring -> done and a
q4d_transfer_completed event for it), History and Logbook answering with that sensor's
states (the recorder is on), and every process it started gone and nothing
of it still listening. Then the dashboard in headless Chromium (`--screenshot`).

Each demo runs inside a network guard (tests/helpers/netguard.py; root only, unguarded
otherwise): a namespace of its own where every name lookup and every packet beyond
loopback is recorded. After each run: nothing recorded, no qBittorrent looked for its
geolocation database, and Chromium sent nothing beyond loopback (what its pages asked
for beyond it is in demo/run/logs/chromium-requests.jsonl, blocked, and copied to
test-artifacts/)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import fastbencode
import pytest

from tests.helpers.netguard import NetGuard

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "demo" / "run"
LIBRARY = ROOT / "demo" / "library"
HASS = RUN / "hass"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def digest_tree(path: Path) -> dict[str, str]:
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def demo_argv(guard: NetGuard | None, *args: str) -> list[str]:
    argv = [str(ROOT / "scripts" / "demo"), *args, "--timeout", "240"]
    return guard.argv(argv) if guard is not None else argv


def port_open(port: int, guard: NetGuard | None) -> bool:
    if guard is not None:  # the demo's loopback is the namespace's
        return port in guard.listening()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def assert_offline(guard: NetGuard | None) -> None:
    """Nothing was looked up or sent beyond loopback; neither qBittorrent tried to fetch
    its IP-geolocation database."""
    if guard is not None:
        guard.assert_clean()
    logs = sorted(RUN.glob("**/qBittorrent/data/logs/qbittorrent.log"))
    assert len(logs) == 2, logs  # the seeder's and the seedbox's
    for log in logs:
        text = log.read_text(errors="replace")
        assert "qBittorrent v" in text, text
        assert "geolocation" not in text.lower(), text


def run_demo(guard: NetGuard | None, *args: str) -> str:
    started = time.monotonic()
    done = subprocess.run(
        demo_argv(guard, *args),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "demo finished: OK" in output, output
    assert re.search(r"first completed transfer [\d.]+ s after ./scripts/demo started", output)
    assert elapsed < 600, f"the demo took {elapsed:.0f} s"
    assert_offline(guard)
    return output


def storage(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HASS / ".storage" / name).read_text())["data"]
    return data


def test_headless_demo_lands_the_samples_verified_and_tagged_done(guard: NetGuard | None) -> None:
    output = run_demo(guard, "--headless")

    # The samples, found from the .torrent files the demo made (not from its own report).
    torrents = sorted((RUN / "torrents").glob("*.torrent"))
    assert len(torrents) == 2, torrents
    backup = RUN / "seedbox" / "qbittorrent" / "qBittorrent" / "data" / "BT_backup"
    kinds = set()
    for torrent in torrents:
        raw = torrent.read_bytes()
        info = fastbencode.bdecode(raw)[b"info"]
        info_hash = hashlib.sha1(fastbencode.bencode(info)).hexdigest()
        name = info[b"name"].decode()
        kinds.add("directory" if b"files" in info else "file")
        # The seedbox qBittorrent's saved state: the torrent's category and its tags.
        resume = fastbencode.bdecode((backup / f"{info_hash}.fastresume").read_bytes())
        category = resume[b"qBt-category"].decode()
        assert category in {"movies", "tv"}
        assert b"q4d:DONE" in resume[b"qBt-tags"], (name, resume[b"qBt-tags"])
        seeded = RUN / "seeder" / "content" / name
        landed = LIBRARY / category / name
        assert landed.exists(), f"{landed} missing\n{output}"
        assert digest_tree(landed) == digest_tree(seeded), name
        # Nothing partial left in the destination.
        assert not list((LIBRARY / category / ".q4d-partial").glob("*"))
    assert kinds == {"file", "directory"}

    # Home Assistant: set up as a user would, and it saw every transfer through.
    assert set(storage("onboarding")["done"]) == {"user", "core_config", "analytics", "integration"}
    assert "demo" in json.dumps(storage("auth_provider.homeassistant")["users"])
    entries = {e["domain"]: e for e in storage("core.config_entries")["entries"]}
    assert entries["q4d"]["source"] == "mqtt"
    assert entries["mqtt"]["data"]["broker"] == "127.0.0.1"
    registered = [e for e in storage("core.entity_registry")["entities"] if e["platform"] == "q4d"]
    observed = [json.loads(line) for line in (RUN / "logs" / "hass-observed.jsonl").open()]
    completed = {
        o["name"]: o["item_id"] for o in observed if o.get("event") == "q4d_transfer_completed"
    }
    assert set(completed) == {torrent.stem for torrent in torrents}
    for name, item_id in completed.items():
        states = [o["state"] for o in observed if o.get("item_id") == item_id and "state" in o]
        assert states[0] == "paused" and states[-1] == "done", (name, states)
        assert "transferring" in states, (name, states)
        assert any(e["unique_id"].endswith(f":{item_id}:status") for e in registered), item_id

    # The recorder: History and Logbook answer with what Home Assistant saw.
    recorded = re.search(
        r"History has (\d+) states of (sensor\.\S+_status), the Logbook (\d+) entries", output
    )
    assert recorded, output
    assert int(recorded.group(1)) >= 3, recorded.group(0)  # queued, transferring, done
    assert int(recorded.group(3)) >= 1, recorded.group(0)

    # Everything it started is gone and nothing it opened still listens.
    assert not (RUN / "state.json").exists()
    starts = re.findall(r"started ([\w-]+) \(pid (\d+)(?:, port (\d+))?\)", output)
    assert {name for name, _, _ in starts} >= {
        "mosquitto", "home-assistant", "sshd", "seeder-qbittorrent", "seedbox-qbittorrent",
        "q4d-labeld", "q4d-bridge"
    }  # fmt: skip
    hass_port = re.search(r"Home Assistant is up on http://127.0.0.1:(\d+)", output)
    assert hass_port, output
    assert not port_open(int(hass_port.group(1)), guard), "Home Assistant still listens"
    for name, pid, port in starts:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", name
        assert not port or not port_open(int(port), guard), f"{name} still listens on {port}"


def test_interactive_demo_keeps_running_until_ctrl_c(guard: NetGuard | None) -> None:
    """The README's first command: it prints the dashboard URL and login, keeps
    everything running, and Ctrl-C stops it all."""
    demo = subprocess.Popen(
        demo_argv(guard),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "the demo keeps running" in line:
                break
        output = "".join(lines)
        assert "the demo keeps running" in output, output
        dashboard = re.search(r"open (http://127.0.0.1:\d+/q4d-transfers/\S+) "
                              r"\(user demo, password q4d-demo\)", output)  # fmt: skip
        assert dashboard, output
        ports = [int(p) for p in re.findall(r"started [\w-]+ \(pid \d+, port (\d+)\)", output)]
        ports.append(int(dashboard.group(1).split(":")[2].split("/")[0]))
        time.sleep(2)
        assert demo.poll() is None, "the demo exited on its own"
        assert all(port_open(port, guard) for port in ports), output
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output += rest
    assert demo.returncode == 130, output
    assert "SIGINT: stopping" in output, output
    assert not (RUN / "state.json").exists()
    assert not [port for port in ports if port_open(port, guard)], output
    assert_offline(guard)


def test_stop_without_a_running_demo_is_harmless() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--stop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_dashboard_renders_the_q4d_cards_in_headless_chromium(guard: NetGuard | None) -> None:
    """Home Assistant with its frontend and the shipped dashboard, in headless Chromium
    after logging in: the transfers card shows the transfers while they run and both
    samples once done, beside the bridge's and the seedbox's cards. Screenshots and
    Chromium's request log: test-artifacts/."""
    for old in ARTIFACTS.glob("dashboard*.png"):
        old.unlink()
    output = run_demo(guard, "--screenshot", str(ARTIFACTS / "dashboard.png"))
    rendered = re.findall(r"dashboard rendered its cards \(([^)]*)\); screenshot (\S+)", output)
    assert [Path(shot).name for _, shot in rendered] == [
        "dashboard-transferring.png",
        "dashboard.png",
    ], output
    for titles, shot in rendered:
        assert {"Transfers", "Throughput", "Seedboxes"} <= set(titles.split(", ")), titles
        width, height = png_size(Path(shot))
        assert width == 1440 and height >= 1000

    # Chromium's request log: requests to 127.0.0.1, and anything beyond it blocked.
    request_log = RUN / "logs" / "chromium-requests.jsonl"
    shutil.copy(request_log, ARTIFACTS / request_log.name)
    log = [json.loads(line) for line in request_log.read_text().splitlines()]
    requested = [e for e in log if e["event"] == "request"]
    assert any(e["loopback"] for e in requested), log
    blocked = {e["url"] for e in log if e["event"] == "blocked"}
    assert {e["url"] for e in requested if not e["loopback"]} <= blocked, log
    assert not [e for e in log if e["event"] == "reached"], log
    summary = re.search(r"headless Chromium: (\d+) requests to 127.0.0.1, (\d+) beyond", output)
    assert summary, output
    assert int(summary.group(2)) == len(blocked), output
