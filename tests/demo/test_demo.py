"""The demo end to end: `./scripts/demo --headless` as a user runs it (set-up included),
then checks of our own on what it left behind: every sample torrent's payload in
demo/library/<category>/ byte-identical to the seeder's copy, the seedbox qBittorrent's
saved state tagging each torrent q4d:DONE, and every process it started gone and
nothing of it still listening."""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
from pathlib import Path

import fastbencode
import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "demo" / "run"
LIBRARY = ROOT / "demo" / "library"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def digest_tree(path: Path) -> dict[str, str]:
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_headless_demo_lands_the_samples_verified_and_tagged_done() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--headless", "--timeout", "240"],
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

    # Everything it started is gone and nothing it opened still listens.
    assert not (RUN / "state.json").exists()
    starts = re.findall(r"started ([\w-]+) \(pid (\d+)(?:, port (\d+))?\)", output)
    assert {name for name, _, _ in starts} >= {
        "mosquitto", "sshd", "seeder-qbittorrent", "seedbox-qbittorrent", "q4d-labeld", "q4d-bridge"
    }  # fmt: skip
    for name, pid, port in starts:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", name
        assert not port or not port_open(int(port)), f"{name} still listens on {port}"


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
