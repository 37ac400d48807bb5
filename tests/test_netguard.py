"""The network guard (tests/helpers/netguard.py) catches lookups and packets beyond
loopback and cleans up after itself; qBittorrent, as the test helpers configure it,
looks nothing up and sends nothing beyond loopback while it seeds and leeches a torrent
made with the test tracker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import allow_loopback_sockets
from tests.helpers.netguard import IP, NETNS_ETC, NetGuard, describe
from tests.helpers.services import OFFLINE_TRACKER

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    allow_loopback_sockets()


def run_inside(guard: NetGuard, code: str, *args: str, timeout: float = 60) -> str:
    """Python code run in the guarded namespace (``ip netns exec``), from the repo root."""
    done = subprocess.run(
        guard.argv([sys.executable, "-c", code, *args]),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


VIOLATIONS = """
import socket
for name in ("example.org", "tracker.invalid"):
    try:
        socket.getaddrinfo(name, 80)
    except OSError:
        pass
for family, address in ((socket.AF_INET, ("198.51.100.1", 443)),
                        (socket.AF_INET6, ("2001:db8::1", 443))):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.connect(address)
        except OSError:
            pass
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"mdns", ("224.0.0.251", 5353))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a hard-wired resolver
    sock.sendto(b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00"
                b"\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01", ("198.51.100.53", 53))
"""


def test_guard_catches_lookups_and_packets_beyond_loopback(netguard: NetGuard) -> None:
    run_inside(netguard, VIOLATIONS)
    found = netguard.violations()
    text = "\n".join(found)
    for expected in (
        "name lookup 'example.org' (A",
        "name lookup 'example.org' (AAAA",
        "name lookup 'tracker.invalid' (A",
        f"packet tcp {netguard.address4}:",
        "-> 198.51.100.1:443 SYN",
        "-> [2001:db8::1]:443 SYN",
        "-> 224.0.0.251:5353",
        "-> 198.51.100.53:53 DNS A example.com",
    ):
        assert expected in text, f"{expected!r} not caught:\n{text}"
    # Each names the process whose socket it was.
    lookups = [r for r in netguard.records() if r["kind"] == "dns"]
    assert all("python" in str(r.get("owner")) for r in lookups), lookups
    with pytest.raises(AssertionError, match=r"name lookup 'example\.org'"):
        netguard.assert_clean()


def test_guard_is_quiet_for_loopback_and_removes_everything(tmp_path: Path) -> None:
    guard = NetGuard(tmp_path / "guard")
    with guard:
        namespace = guard.namespace
        assert namespace in subprocess.run([IP, "netns", "list"], capture_output=True,
                                           text=True, check=True, timeout=10).stdout  # fmt: skip
        # Loopback, both families, and "localhost" from /etc/hosts: nothing recorded.
        run_inside(
            guard,
            "import socket\n"
            "socket.getaddrinfo('localhost', 80, socket.AF_INET)\n"
            "for family, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
            "    with socket.socket(family) as server:\n"
            "        server.bind((host, 0)); server.listen()\n"
            "        with socket.create_connection(server.getsockname()[:2]) as client:\n"
            "            conn, _ = server.accept(); client.sendall(b'x'); conn.recv(1); conn.close()\n",
        )
        assert guard.violations() == []
        guard.assert_clean()
        # Something left running inside is ended by PID when the guard stops.
        sleeper = subprocess.Popen(guard.argv(["sleep", "300"]), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while sleeper.pid not in guard.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeper.pid in guard.pids()
        recorder = guard._recorder
        assert recorder is not None
    assert sleeper.wait(timeout=10) != 0
    assert f"{sleeper.pid} (sleep)" in guard.leftovers
    assert recorder.poll() is not None
    listed = subprocess.run(
        [IP, "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    )
    assert namespace not in listed.stdout
    assert not (NETNS_ETC / namespace).exists()
    routes = "".join(
        subprocess.run([IP, *family, "route", "show", "type", "blackhole"], capture_output=True,
                       text=True, timeout=10, check=True).stdout
        for family in ([], ["-6"])
    )  # fmt: skip
    assert guard.address4 not in routes
    assert guard.address6.rsplit("::", 1)[0] not in routes
    # The record stays readable: the canary came first, nothing after it.
    kinds = [json.loads(line)["kind"] for line in guard.record_path.read_text().splitlines()]
    assert kinds[0] == "ready" and kinds[-1] == "stopped"
    assert kinds.count("dns") >= 1 and kinds.count("packet") == 1  # the canary's


# --- qBittorrent as the test helpers start it -------------------------------------------

QBITTORRENT = """
import json, os, sys, time
from pathlib import Path
from tests.helpers.qbittorrent import QBittorrent
from tests.seedbox.support import QbtApi, make_torrent, torrent_hash

root = Path(sys.argv[1])
payload = root / "content" / "payload.bin"
payload.parent.mkdir(parents=True)
payload.write_bytes(os.urandom(3 * 1024 * 1024))
raw = make_torrent(payload, root / "payload.torrent")
info_hash = torrent_hash(raw)
with QBittorrent(root / "seeder") as seeder, QBittorrent(root / "leecher") as leecher:
    seeding = QbtApi(seeder.url, seeder.username, seeder.password)
    leeching = QbtApi(leecher.url, leecher.username, leecher.password)
    seeding.add(raw, payload.parent)
    deadline = time.monotonic() + 30
    while seeding.info(info_hash).get("progress") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)  # its hash check
    leeching.add(raw, leecher.downloads)
    while leeching.info(info_hash).get("progress") != 1 and time.monotonic() < deadline:
        leeching.add_peers(info_hash, f"127.0.0.1:{seeder.peer_port}")
        time.sleep(0.5)
    for _ in range(150):  # until the leecher has announced (to the closed loopback port)
        with leeching.opener.open(f"{leecher.url}/api/v2/torrents/trackers?hash={info_hash}") as got:
            trackers = json.loads(got.read())
        if any(t["url"] == sys.argv[2] and t["msg"] for t in trackers):
            break
        time.sleep(0.1)
    time.sleep(3)  # what either does a moment after
    print(json.dumps({"progress": leeching.info(info_hash).get("progress"),
                      "trackers": trackers,
                      "logs": [str(p) for p in root.glob("*/qBittorrent/data/logs/qbittorrent.log")]}))
"""


def test_qbittorrent_looks_nothing_up_and_stays_on_loopback(
    netguard: NetGuard, tmp_path: Path
) -> None:
    """The helper's qBittorrent.conf (tests/helpers/qbittorrent.py) and the test
    tracker (OFFLINE_TRACKER): a seeder and a leecher complete a torrent over loopback
    in the guarded namespace, announcing to the closed loopback tracker."""
    work = tmp_path / "qbt"
    work.mkdir()
    result: dict[str, Any] = json.loads(
        run_inside(netguard, QBITTORRENT, str(work), OFFLINE_TRACKER)
    )
    assert result["progress"] == 1, result
    announced = [t for t in result["trackers"] if t["url"] == OFFLINE_TRACKER]
    assert announced and "refused" in announced[0]["msg"].lower(), result["trackers"]
    netguard.assert_clean()
    assert len(result["logs"]) == 2, result
    for log in map(Path, result["logs"]):
        text = log.read_text()
        assert "started" in text, text
        assert "geolocation" not in text.lower(), text


def test_describe_names_the_record() -> None:
    packet = {"kind": "packet", "proto": "tcp", "src": "10.253.1.1:5", "dst": "1.2.3.4:80",
              "info": "SYN", "owner": "pid 7 (x)"}  # fmt: skip
    assert describe(packet) == "packet tcp 10.253.1.1:5 -> 1.2.3.4:80 SYN from pid 7 (x)"
    lookup = {"kind": "dns", "name": "a.b", "type": "A", "transport": "udp", "client": "c"}
    assert describe(lookup) == "name lookup 'a.b' (A, DNS over udp from c)"
