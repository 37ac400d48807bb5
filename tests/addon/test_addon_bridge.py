"""The add-on's start as the image runs it, without the image: `q4d-bridge addon-run` with
a fake Supervisor handing over a real Mosquitto that needs its login, and a real sshd as
the seedbox (pasted key, pinned host key). It becomes the bridge, which the integration
then finds online on q4d/bridge/<id>/status, and which stops on SIGTERM saying offline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiomqtt

from tests.addon.mqtt_login import (
    PASSWORD,
    STATUS,
    USER,
    LoginMosquitto,
    next_payload,
    wait_for,
)
from tests.addon.supervisor_fake import TOKEN, fake_supervisor, mosquitto_service
from tests.helpers.services import SshServer


async def _log_says(path: Path, text: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while text not in path.read_text(errors="replace"):
            await asyncio.sleep(0.2)


async def test_the_addon_brings_the_bridge_online(tmp_path: Path, sshd: SshServer) -> None:
    with LoginMosquitto(tmp_path / "mqtt") as broker:
        options = {
            "bridge_id": "home",
            "seedboxes": [
                {
                    "id": "seedbox1",
                    "host": sshd.host,
                    "port": sshd.port,
                    "user": sshd.user,
                    "private_key": sshd.client_key.read_text().replace("\n", " "),
                    "host_key": sshd.host_public_key,
                    "engine": "sftp",
                    "remote_root": str(tmp_path / "remote"),
                }
            ],
            "destinations": [{"name": "default", "path": "/media/q4d-addon-test"}],
            "rules": [],
            "log_level": "debug",
        }
        data = tmp_path / "data"
        data.mkdir()
        (data / "options.json").write_text(json.dumps(options))
        service = mosquitto_service("127.0.0.1", broker.port, USER, PASSWORD)
        async with (
            fake_supervisor(service) as supervisor,
            aiomqtt.Client("127.0.0.1", broker.port, username=USER, password=PASSWORD) as client,
        ):
            await client.subscribe(STATUS, qos=1)
            env = {
                **os.environ,
                "SUPERVISOR_URL": supervisor.url,
                "SUPERVISOR_TOKEN": TOKEN,
                "HASSIO_TOKEN": TOKEN,
            }
            log = (tmp_path / "addon.log").open("wb")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "q4d_bridge.cli", "addon-run",
                "--options", str(data / "options.json"), "--data", str(data),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )  # fmt: skip
            try:
                status = await wait_for(client, STATUS, lambda p: p["state"] == "online")
                assert status["bridge_id"] == "home" and status["prefix"] == "q4d"
                # the held SSH link is up: the pasted key logged in, the pinned key matched
                await _log_says(tmp_path / "addon.log", "seedbox seedbox1: no hook installed")
                # exec: the add-on's process is the bridge now, without the Supervisor's token
                cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
                assert cmdline[1:5] == [b"-m", b"q4d_bridge.cli", b"run", b"--config"]
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
                assert not [e for e in environ if TOKEN.encode() in e]
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
                await wait_for(client, STATUS, lambda p: p["state"] == "offline")
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                log.close()
        # what the integration will read later: the retained status says offline
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username=USER, password=PASSWORD
        ) as later:
            await later.subscribe(STATUS, qos=1)
            assert (await next_payload(later, STATUS))["state"] == "offline"
    text = (tmp_path / "addon.log").read_text(errors="replace")
    assert "found by Home Assistant on q4d/bridge/home/status" in text
    assert PASSWORD not in text and TOKEN not in text
