"""`config_test` over MQTT, on a running bridge with a real Mosquitto and sshd: a host
key shown, then confirmed; a configured seedbox and destination; a test waiting on a
silent server holds up no other command; a refused password appears in no answer, no
message on the broker and no log line; bad arguments and a refused value."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge

from tests.bridge.test_e2e import running_bridge
from tests.bridge.test_nodes import command
from tests.helpers.mqtt import publish
from tests.helpers.services import LOOPBACK, Mosquitto, SshServer

pytestmark = pytest.mark.timeout(90)
RESULTS = "q4d/bridge/test/command/result"


def faster(bridge: Bridge) -> None:
    assert bridge.commands.probes is not None
    bridge.commands.probes.timeout = 2.0


async def test_config_test_over_mqtt(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, caplog: Any
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", prepare=faster) as env:
        value: dict[str, Any] = {
            "host": LOOPBACK, "port": sshd.port, "user": sshd.user,
            "key": str(sshd.client_key), "remote_roots": [str(env.remote)],
        }  # fmt: skip
        answer = await command(env, "config_test", kind="ssh", value=value)
        assert answer["ok"] is False
        error = answer["error"]
        assert (error["code"], error["host_key"]) == ("host_key_unknown", sshd.host_public_key)
        assert error["fingerprint"].startswith("SHA256:") and error["message"]

        answer = await command(
            env, "config_test", kind="ssh", value={**value, "host_key": error["host_key"]}
        )
        assert answer["ok"] is True, answer
        result = answer["result"]
        assert (result["kind"], result["fingerprint"]) == ("ssh", error["fingerprint"])
        assert result["roots"] == [{"path": str(env.remote), "ok": True}]
        answer = await command(env, "config_test", kind="ssh", value={"id": "sb1"})
        assert answer["result"]["roots"] == [{"path": str(env.remote), "ok": True}]

        answer = await command(env, "config_test", kind="destination", value={"id": "tv"})
        assert answer["ok"] is True, answer
        assert answer["result"]["existed"] is False and not env.library.exists()

        with socket.socket() as silent:  # accepts (the backlog) and never speaks
            silent.bind((LOOPBACK, 0))
            silent.listen()
            waiting = json.dumps(
                {"id": "slow", "op": "config_test",
                 "args": {"kind": "ssh", "value": {**value, "port": silent.getsockname()[1]}}}
            ).encode()  # fmt: skip
            asked = time.monotonic()
            await publish(env.port, [("q4d/bridge/test/command", waiting)])
            queue = await command(env, "get_queue")
            assert queue["ok"] is True
            assert not [m for m in env.recorder.on(RESULTS) if m.json()["id"] == "slow"]
            slow = await env.recorder.wait_for(
                lambda: [m.json() for m in env.recorder.on(RESULTS) if m.json()["id"] == "slow"],
                10,
                "the slow test's answer",
            )
            assert slow[0]["error"] == {"code": "timeout", "message": "no answer within 2 s"}
            assert time.monotonic() - asked < 6

        secret = "S3cret-never-echoed"
        login = {**value, "key": None, "password": secret, "host_key": sshd.host_public_key}
        answer = await command(
            env, "config_test", kind="ssh", value={k: v for k, v in login.items() if v}
        )
        assert answer["error"]["code"] == "auth_failed"
        # a password typed into another field too: the refusal quotes that field
        mixed = {"host": LOOPBACK, "user": "me", "password": secret, "remote_roots": [secret]}
        answer = await command(env, "config_test", kind="ssh", value=mixed)
        assert answer["error"]["errors"] == ["remote_roots[0]: must be an absolute path, got '***'"]
        assert secret not in caplog.text
        said = [m for m in env.recorder.on("q4d/") if m.topic != "q4d/bridge/test/command"]
        assert said and not [m for m in said if secret in m.payload.decode()]

        answer = await command(env, "config_test", kind="rsync", value={})
        assert answer["error"]["code"] == "invalid_args"
        answer = await command(env, "config_test", kind="ssh", value={"host": LOOPBACK})
        assert answer["error"] == {
            "code": "invalid",
            "message": "user: required key not provided",
            "errors": ["user: required key not provided"],
            "fields": {"user": "required key not provided"},
        }
