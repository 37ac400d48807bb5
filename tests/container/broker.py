"""The compose file's Mosquitto (container/mosquitto.conf) run by this machine's
mosquitto: the same file with only its listener and paths moved into the test's folder,
a password file made with mosquitto_passwd, and MQTT clients that log in to it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from tests.helpers.mqtt import Recorder, recording_on
from tests.helpers.podman import REPO
from tests.helpers.services import Mosquitto

CONF = REPO / "container" / "mosquitto.conf"
# What container/mosquitto.conf names inside the eclipse-mosquitto container.
PASSWORD_FILE = "/mosquitto/config/passwd"
PERSISTENCE = "/mosquitto/data/"
LISTENER = "listener 1883"


class ComposeBroker(Mosquitto):
    """container/mosquitto.conf on 127.0.0.1, with `users` (name: password)."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        self.users = users
        super().__init__(workdir)

    def _write_config(self) -> None:
        text = CONF.read_text()
        passwd = self.workdir / "passwd"
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        for old, new in (
            (LISTENER, f"listener {self.port} {self.host}"),
            (PASSWORD_FILE, str(passwd)),
            (PERSISTENCE, f"{data}/"),
        ):
            # Each exactly once: a changed file fails here, not in a puzzling way later.
            assert text.count(old) == 1, f"{CONF} should have {old!r} once"
            text = text.replace(old, new)
        if os.geteuid() == 0:  # as Mosquitto: stay root to enter pytest's 0700 folders
            text += "user root\n"
        self.config_path.write_text(text)
        # mosquitto_passwd -U hashes a plain `user:password` file in place: no password
        # on a command line.
        passwd.write_text("".join(f"{user}:{pw}\n" for user, pw in self.users.items()))
        passwd.chmod(0o600)
        subprocess.run(
            ["mosquitto_passwd", "-U", str(passwd)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )

    @property
    def persistence_file(self) -> Path:
        return self.workdir / "data" / "mosquitto.db"

    def client(self, user: str | None) -> aiomqtt.Client:
        password = self.users[user] if user is not None else None
        return aiomqtt.Client(self.host, self.port, username=user, password=password, timeout=10)


@contextlib.asynccontextmanager
async def recording(broker: ComposeBroker, user: str, *topics: str) -> AsyncIterator[Recorder]:
    """tests.helpers.mqtt.recording, logged in as `user`."""
    async with broker.client(user) as client, recording_on(client, *topics) as recorder:
        yield recorder


async def publish(broker: ComposeBroker, user: str, messages: list[tuple[str, bytes]]) -> None:
    async with broker.client(user) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
