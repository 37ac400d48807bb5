"""The bridge as a process: one per data directory, and `q4d-bridge status` showing what
the running bridge shows."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bridge.test_crash import event, online_count
from tests.bridge.test_e2e import make_file
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import Recorder, publish, recording
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)


def config_for(tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer) -> dict[str, object]:
    return bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, broker_port=mosquitto.port, ssh_port=sshd.port,
        user=sshd.user, remote_root=str(tmp_path / "seedbox"),
    )  # fmt: skip


async def test_one_bridge_per_data_dir_and_a_crash_frees_it(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    config = config_for(tmp_path, mosquitto, sshd)
    first = BridgeProcess(tmp_path / "first", config)
    second = BridgeProcess(tmp_path / "second", config)
    async with recording(mosquitto.port) as rec:
        first.start()
        try:
            await rec.wait_for(lambda: online_count(rec) >= 1, 20, "the first bridge online")
            second.start()
            assert second.proc is not None
            assert second.proc.wait(20) == 1
            assert re.search(r"data.* is in use by another q4d-bridge \(pid \d+\)", second.log())
            assert first.proc is not None and first.proc.poll() is None  # undisturbed
            first.kill()  # SIGKILL: the kernel releases the lock
            third = BridgeProcess(tmp_path / "third", config)
            with third:
                await rec.wait_for(lambda: online_count(rec) >= 2, 20, "a new bridge online")
                assert third.proc is not None and third.proc.poll() is None
        finally:
            first.stop()
            second.stop()


def status(bridge: BridgeProcess) -> str:
    argv = [sys.executable, "-m", "q4d_bridge.cli", "status", "--config", str(bridge.config_path)]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def progress(rec: Recorder) -> float:
    items = [m.json() for m in rec.on("q4d/bridge/test/item/") if m.payload]
    return max((i["progress"] for i in items), default=0.0)


async def test_status_shows_the_progress_the_running_bridge_shows(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Progress reaches the store at a bounded rate, so `status` (which reads the
    store) agrees with Home Assistant within seconds instead of showing 0 %."""
    config = config_for(tmp_path, mosquitto, sshd)
    config["seedboxes"][0]["engine"] = "sftp"  # type: ignore[index]
    config["transfers"].update(bandwidth_limit="5MiB")  # type: ignore[attr-defined]
    make_file(tmp_path / "seedbox" / "film.mkv", 80 * 2**20)
    bridge = BridgeProcess(tmp_path / "proc", config)
    async with recording(mosquitto.port) as rec:
        with bridge:
            await rec.wait_for(lambda: online_count(rec) >= 1, 20, "bridge online")
            await publish(mosquitto.port, [event(tmp_path / "seedbox", "film.mkv", 1)])
            await rec.wait_for(lambda: progress(rec) >= 25, 60, "a quarter transferred")
            deadline = time.monotonic() + 15
            shown = 0.0
            while time.monotonic() < deadline:  # saved every 5 s at most
                line = next(ln for ln in status(bridge).splitlines() if "film.mkv" in ln)
                shown = float(re.search(r"([\d.]+)%", line).group(1))  # type: ignore[union-attr]
                if shown > 0:
                    break
                await asyncio.sleep(1)
            assert "transferring" in line
            assert shown > 0
            # never ahead of what the bridge publishes (its MQTT message may still be on
            # its way when the store already holds the figure)
            await rec.wait_for(lambda: progress(rec) + 0.1 >= shown, 10, "MQTT catching up")
            assert progress(rec) - shown < 40  # at most ~5 s behind at 5 MiB/s of 80 MiB
