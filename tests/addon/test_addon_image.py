"""The add-on's image, built from addon/q4d-bridge/Dockerfile on the locally made Debian
base (no registry here) with no network, and run as the Supervisor runs an add-on:
Docker's init (`init: true`), /data holding options.json, the Supervisor's URL and token
in the environment. It reaches a fake Supervisor, a Mosquitto that needs the login the
Supervisor hands over, and an sshd seedbox, all on loopback; the bridge comes online, and
stops on SIGTERM saying offline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.addon.mqtt_login import PASSWORD, STATUS, USER, LoginMosquitto, wait_for
from tests.addon.supervisor_fake import TOKEN, fake_supervisor, mosquitto_service
from tests.helpers import podman
from tests.helpers.podman import base_image_name, container_wheels, podman_available
from tests.helpers.services import SshServer

__all__ = ["base_image_name", "container_wheels", "podman_available"]  # fixtures

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "q4d-bridge"
TAG = "localhost/q4d-addon:test"


@pytest.fixture(scope="module")
def addon_image(
    base_image_name: str, container_wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The Supervisor builds the add-on's folder alone; here its wheels/ holds the
    bridge's wheel (built offline from this checkout) and its dependencies'."""
    context = tmp_path_factory.mktemp("addon-context") / "q4d-bridge"
    shutil.copytree(ADDON, context)
    wheels = context / "wheels"
    for wheel in container_wheels.glob("*.whl"):
        shutil.copy2(wheel, wheels)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
         "--find-links", str(container_wheels), "-w", str(wheels), str(ROOT)],
        check=True, timeout=300, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip
    built = podman.build(
        context / "Dockerfile", context, TAG, build_args={"BUILD_FROM": base_image_name}
    )
    podman.measure("add-on image build", f"{built.seconds:.0f} s")
    podman.measure("add-on image size", f"{podman.image_size(TAG) / 2**20:.0f} MiB")
    return str(built.tag)


@contextlib.asynccontextmanager
async def addon_container(image: str, data: Path, supervisor_url: str) -> AsyncIterator[str]:
    """`docker run --init` as the Supervisor starts an add-on with `init: true`, on the
    host network (loopback is the test's); removed by its id whatever happens. podman
    blocks, so it runs in a thread: the fake Supervisor must keep answering."""
    with tempfile.TemporaryDirectory(prefix="q4d-cid-") as scratch:
        cidfile = Path(scratch) / "cid"
        try:
            await asyncio.to_thread(
                podman.podman,
                "run", "--detach", "--init", "--cidfile", str(cidfile), "--network", "host",
                "--volume", f"{data}:/data", "--env", f"SUPERVISOR_URL={supervisor_url}",
                "--env", f"SUPERVISOR_TOKEN={TOKEN}", image,
            )  # fmt: skip
            yield cidfile.read_text().strip()
        finally:
            if cidfile.exists():
                cid = cidfile.read_text().strip()
                await asyncio.to_thread(
                    podman.podman, "rm", "--force", "--time", "5", cid, check=False
                )


def _options(sshd: SshServer) -> dict[str, Any]:
    return {
        "bridge_id": "home",
        "seedboxes": [
            {
                "id": "seedbox1",
                "host": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "private_key": sshd.client_key.read_text(),
                "host_key": sshd.host_public_key,
            }
        ],
        "destinations": [{"name": "default", "path": "/media/downloads"}],
        "rules": [],
        "log_level": "debug",
    }


async def test_the_addon_image_runs_the_bridge(
    addon_image: str, tmp_path: Path, sshd: SshServer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "options.json").write_text(json.dumps(_options(sshd)))
    with LoginMosquitto(tmp_path / "mqtt") as broker:
        service = mosquitto_service("127.0.0.1", broker.port, USER, PASSWORD)
        async with (
            fake_supervisor(service) as supervisor,
            aiomqtt.Client("127.0.0.1", broker.port, username=USER, password=PASSWORD) as client,
        ):
            await client.subscribe(STATUS, qos=1)
            started = time.monotonic()
            async with addon_container(addon_image, data, supervisor.url) as cid:
                try:
                    status = await wait_for(
                        client, STATUS, lambda p: p["state"] == "online", timeout=60
                    )
                    podman.measure(
                        "add-on cold start to online", f"{time.monotonic() - started:.1f} s"
                    )
                    assert status["bridge_id"] == "home" and status["prefix"] == "q4d"
                    await _logs_say(cid, "seedbox seedbox1: no hook installed")
                    stopped = await asyncio.to_thread(
                        podman.podman, "stop", "--time", "30", cid, timeout=90
                    )
                    assert stopped.returncode == 0
                    code = await asyncio.to_thread(
                        podman.podman, "inspect", "--format", "{{.State.ExitCode}}", cid
                    )
                    assert code.stdout.strip() == "0"
                    await wait_for(client, STATUS, lambda p: p["state"] == "offline")
                finally:
                    logs = await asyncio.to_thread(podman.podman, "logs", cid, check=False)
                    (tmp_path / "addon.log").write_text(logs.stdout + logs.stderr)
    text = (tmp_path / "addon.log").read_text()
    assert "found by Home Assistant on q4d/bridge/home/status" in text
    assert PASSWORD not in text and TOKEN not in text
    assert stat.S_IMODE((data / "secrets" / "mqtt_password").stat().st_mode) == 0o600
    assert PASSWORD not in (data / "bridge.yaml").read_text()


async def _logs_say(cid: str, text: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            logs = await asyncio.to_thread(podman.podman, "logs", cid, check=False)
            if text in logs.stdout + logs.stderr:
                return
            await asyncio.sleep(0.5)
