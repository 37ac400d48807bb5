"""The add-on's start as the image runs it, without the image: `q4d-bridge addon-run` with
a fake Supervisor handing over a real Mosquitto that needs its login, and a real sshd as
the seedbox (pinned host key; a pasted key, one with a passphrase, or a password). It
becomes the bridge, which the integration then finds online on q4d/bridge/<id>/status,
and which stops on SIGTERM saying offline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import asyncssh
import pytest

from tests.addon.mqtt_login import (
    PASSWORD,
    STATUS,
    USER,
    LoginMosquitto,
    next_payload,
    wait_for,
)
from tests.addon.supervisor_fake import TOKEN, fake_supervisor, mosquitto_service
from tests.conftest import allow_loopback_sockets
from tests.helpers import sshuser
from tests.helpers.services import SshServer
from tests.helpers.sshuser import PasswordUser

PASSPHRASE = "key-Pass phrase, 'q' $x"


@pytest.fixture(scope="module")
def password_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """An sshd that also takes passwords (of system users: see password_user)."""
    allow_loopback_sockets()
    with SshServer(tmp_path_factory.mktemp("sshd-pw"), passwords=True) as server:
        yield server


@pytest.fixture(scope="module")
def password_user() -> Iterator[PasswordUser]:
    if reason := sshuser.unavailable():
        pytest.skip(reason)
    with sshuser.password_user() as made:
        yield made


def _login(login: str, request: pytest.FixtureRequest) -> tuple[SshServer, dict[str, Any], str]:
    """The seedbox's sshd, its login options and the secret that must stay unseen."""
    if login == "password":
        user: PasswordUser = request.getfixturevalue("password_user")
        server: SshServer = request.getfixturevalue("password_sshd")
        return server, {"user": user.name, "password": user.password}, user.password
    server = request.getfixturevalue("sshd")
    text = server.client_key.read_text()
    if login == "key with a passphrase":
        locked = asyncssh.import_private_key(text).export_private_key("openssh", PASSPHRASE)
        text = locked.decode()
        assert asyncssh.import_private_key(text, PASSPHRASE)  # the same key, now encrypted
        options = {"passphrase": PASSPHRASE}
    else:
        options = {}
    secret = text.splitlines()[2]  # a line of the key's body
    return server, {"user": server.user, "private_key": text.replace("\n", " "), **options}, secret


async def _log_says(path: Path, text: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while text not in path.read_text(errors="replace"):
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("login", ["key", "key with a passphrase", "password"])
async def test_the_addon_brings_the_bridge_online(
    tmp_path: Path, login: str, request: pytest.FixtureRequest
) -> None:
    sshd, login_options, secret = _login(login, request)
    sshd_log = sshd.log_offset()
    with LoginMosquitto(tmp_path / "mqtt") as broker:
        options = {
            "bridge_id": "home",
            "seedboxes": [
                {
                    "id": "seedbox1",
                    "host": sshd.host,
                    "port": sshd.port,
                    **login_options,
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
                # the held SSH link is up: the login worked, the pinned key matched
                await _log_says(tmp_path / "addon.log", "seedbox seedbox1: no hook installed")
                how = "password" if login == "password" else "publickey"
                assert f"Accepted {how} for {login_options['user']}" in sshd.log()[sshd_log:]
                # exec: the add-on's process is the bridge now, without the Supervisor's token
                cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                assert cmdline.split(b"\0")[1:5] == [b"-m", b"q4d_bridge.cli", b"run", b"--config"]
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
                assert TOKEN.encode() not in environ
                for text in (cmdline, environ):
                    assert secret.encode() not in text and PASSPHRASE.encode() not in text
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
    for unseen in (PASSWORD, TOKEN, secret, PASSPHRASE):
        assert unseen not in text
