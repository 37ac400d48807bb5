"""Mosquitto as the Mosquitto add-on runs it, with a login, and waiting for what the
bridge says on it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import aiomqtt

from tests.helpers.services import Mosquitto

USER, PASSWORD = "addons", "mqtt-Secret-7777"
STATUS = "q4d/bridge/home/status"


class LoginMosquitto(Mosquitto):
    """Mosquitto that refuses anonymous clients, as the Mosquitto add-on does."""

    def _write_config(self) -> None:
        super()._write_config()
        passwords = self.workdir / "passwords"
        passwords.write_text(f"{USER}:{PASSWORD}\n")
        # -U hashes the file in place: the password never reaches a command line
        subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True, timeout=30)
        passwords.chmod(0o644)
        text = self.config_path.read_text().replace(
            "allow_anonymous true", f"allow_anonymous false\npassword_file {passwords}"
        )
        self.config_path.write_text(text)


async def next_payload(client: aiomqtt.Client, topic: str, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.matches(topic) and isinstance(message.payload, bytes):
                return json.loads(message.payload)
    raise AssertionError(f"no message on {topic}")


async def wait_for(client: aiomqtt.Client, topic: str, test: Any, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            payload = await next_payload(client, topic, timeout)
            if test(payload):
                return payload
