"""bench/wan.py's loopback figures: the bridge process's own CPU-seconds per GiB (lftp
engine, real bridge, Mosquitto and sshd on 127.0.0.1) and verify.bad_pieces' speed
against a bare sha1 pass over the same file."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
from q4d_bridge.transfer.verify import TorrentInfo, bad_pieces
from wan_profiles import GIB, MIB, SLOWEST
from wanlink import run

from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import recording
from tests.helpers.services import Mosquitto, SshServer


def cpu_seconds(pid: int) -> float:
    """utime + stime of this process alone (its children, lftp and ssh, not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bridge_cpu(work: Path, payload: Path) -> dict[str, float]:
    """One completion event through the real bridge (lftp engine) on loopback."""
    with Mosquitto(work / "mosquitto") as broker, SshServer(work / "sshd") as sshd:
        config = bridge_config(
            work / "data", work / "library", key=sshd.client_key,
            known_hosts=sshd.known_hosts, broker_port=broker.port, ssh_port=sshd.port,
            user=sshd.user, remote_root=str(payload.parent), bridge_id="wan",
        )  # fmt: skip
        config["seedboxes"][0]["engine"] = "lftp"
        config["log_level"] = "WARNING"
        async with recording(broker.port, "q4d/bridge/wan/event", "q4d/bridge/wan/status") as rec:
            with BridgeProcess(work / "bridge", config) as bridge:
                assert bridge.proc is not None
                await rec.wait_for(
                    lambda: any(m.payload and m.json()["state"] == "online"
                                for m in rec.on("q4d/bridge/wan/status")),
                    30, "bridge online",
                )  # fmt: skip
                before = cpu_seconds(bridge.proc.pid)
                started = time.monotonic()
                event = {"v": 1, "event_id": "wan-cpu", "path": str(payload), "hash": "ab" * 20}
                async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                    await client.publish(
                        "q4d/seedbox/sb1/completed", json.dumps(event).encode(), qos=1
                    )
                finished = await rec.wait_for(
                    lambda: rec.events("completed") or rec.events("failed"),
                    120 + payload.stat().st_size / SLOWEST, "item finished",
                )  # fmt: skip
                elapsed = time.monotonic() - started
                used = cpu_seconds(bridge.proc.pid) - before
                if finished[0]["event"] != "completed":
                    raise RuntimeError(
                        f"bridge transfer failed: {finished[0]}\n{bridge.log()[-3000:]}"
                    )
    size = payload.stat().st_size
    return {
        "cpu_seconds": used,
        "cpu_s_per_gib": used / (size / GIB),
        "mb_s": size / elapsed / 1e6,
    }


def verify_speed(payload: Path, work: Path) -> dict[str, float]:
    """verify.bad_pieces vs a bare hashlib.sha1 pass over the same (cached) file."""
    torrent_path = work / "payload.torrent"
    run(["mktorrent", "-l", "21", "-o", str(torrent_path), str(payload)], timeout=300)
    torrent = TorrentInfo.from_bytes(torrent_path.read_bytes())

    def plain() -> None:
        digest = hashlib.sha1(usedforsecurity=False)
        with payload.open("rb", buffering=0) as handle:
            while block := handle.read(MIB):
                digest.update(block)

    def q4d() -> None:
        if bad_pieces(payload, torrent):
            raise RuntimeError("verify found bad pieces in an intact file")

    def best(fn: Callable[[], None]) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    plain()  # page cache warm for both
    sha1_s, verify_s = best(plain), best(q4d)
    size = payload.stat().st_size
    return {
        "sha1_mb_s": size / sha1_s / 1e6,
        "verify_mb_s": size / verify_s / 1e6,
        "ratio": sha1_s / verify_s,
    }
