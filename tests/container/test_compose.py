"""compose.yaml, read as a compose file is: there is no Docker here to run it, so what it
promises is checked piece by piece. Its services, mounts and secrets hang together; the
environment and secrets it hands the bridge, with the sample config next to it, make a
configuration the bridge accepts; and its Mosquitto configuration, run by a real
Mosquitto, refuses anonymous clients, takes the password file's and persists."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml
from q4d_bridge.config.loader import parse_config

from tests.conftest import allow_loopback_sockets
from tests.container.broker import CONF, PASSWORD_FILE, PERSISTENCE, ComposeBroker
from tests.helpers.podman import REPO

SAMPLE_CONFIG = REPO / "container" / "bridge.yaml"
MOUNT = re.compile(r"^(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?$")
SECRET_PATH = re.compile(r"/run/secrets/([A-Za-z0-9_.-]+)")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """target: (source, mode) of a service's short-syntax volumes."""
    found = {}
    for volume in service["volumes"]:
        match = MOUNT.match(volume)
        assert match, f"not a source:target[:mode] volume: {volume!r}"
        found[match["target"]] = (match["source"], match["mode"])
    return found


def test_services_mounts_and_secrets_hang_together() -> None:
    spec = compose()
    assert set(spec["services"]) == {"bridge", "mosquitto"}
    bridge, mosquitto = spec["services"]["bridge"], spec["services"]["mosquitto"]

    assert bridge["build"]["context"] == "."
    assert (REPO / bridge["build"]["dockerfile"]).is_file()
    assert "mosquitto" in bridge["depends_on"]
    # The media user runs it (docs/container.md#puid-and-pgid).
    assert bridge["user"] == "${PUID:-1000}:${PGID:-1000}"
    bridge_mounts = mounts(bridge)
    assert {"/config", "/data", "/library"} <= set(bridge_mounts)
    assert bridge_mounts["/config"][1] == "ro"
    assert bridge["environment"]["Q4D_CONFIG"].startswith("/config/")

    # Every secret the bridge is given is declared with a file, and every secret path
    # its environment or the sample config names is one it is given.
    declared = spec["secrets"]
    assert set(bridge["secrets"]) <= set(declared)
    assert all("file" in declared[name] for name in bridge["secrets"])
    named = set(SECRET_PATH.findall(yaml.safe_dump(bridge["environment"])))
    named |= set(SECRET_PATH.findall(SAMPLE_CONFIG.read_text()))
    assert named == set(bridge["secrets"])

    # Mosquitto runs container/mosquitto.conf, with the password file and the
    # persistence folder that file names mounted where it names them.
    broker_mounts = mounts(mosquitto)
    assert broker_mounts["/mosquitto/config/mosquitto.conf"] == ("./container/mosquitto.conf", "ro")
    assert (REPO / "container" / "mosquitto.conf").is_file()
    assert PASSWORD_FILE in broker_mounts
    data_volume = broker_mounts[PERSISTENCE.rstrip("/")][0]
    assert data_volume in spec["volumes"]  # a named volume: it outlives the container
    assert any(port.endswith(":1883") for port in mosquitto["ports"])


def test_its_environment_and_secrets_make_a_config_the_bridge_takes(tmp_path: Path) -> None:
    """The sample config and compose's environment, with each container path (secrets,
    /config, /data, /library) moved into the test's folder: what the bridge reads from
    them is what compose means, so a misspelt Q4D_ variable or secret fails here."""
    bridge = compose()["services"]["bridge"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in bridge["secrets"]:
        (secrets / name).write_text(f"{name}-value\n")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "known_hosts").write_text("seedbox.example.com ssh-ed25519 AAAA\n")
    moves = {
        "/run/secrets/": f"{secrets}/",
        "/config/": f"{config_dir}/",
        "/library/": f"{tmp_path}/library/",
        "/data": f"{tmp_path}/data",
    }

    def moved(text: str) -> str:
        for old, new in moves.items():
            text = text.replace(old, new)
        return text

    environ = {key: moved(str(value)) for key, value in bridge["environment"].items()}
    assert all(key.startswith("Q4D_") for key in environ)
    raw = yaml.safe_load(moved(SAMPLE_CONFIG.read_text()))
    config = parse_config(raw, environ)

    assert config.broker.host == "mosquitto"  # the compose service's name
    assert config.broker.port == 1883
    assert config.broker.username == "q4d-bridge"
    assert config.broker.password == "mqtt_password-value"  # read from the secret's file
    [seedbox] = config.seedboxes.values()
    assert seedbox.key == str(secrets / "seedbox_key")
    assert seedbox.known_hosts == str(config_dir / "known_hosts")
    assert seedbox.engine == "sftp"  # auto: the built-in engine
    assert config.data_dir == tmp_path / "data"
    assert all(
        str(p).startswith(f"{tmp_path}/library/") for p in config.routing.destinations.values()
    )


async def test_its_mosquitto_conf_refuses_anonymous_logs_in_and_persists(tmp_path: Path) -> None:
    allow_loopback_sockets()
    assert "allow_anonymous false" in CONF.read_text()
    broker = ComposeBroker(tmp_path / "broker", {"q4d-bridge": "bridge-secret-1", "ha": "ha-2"})
    with broker:
        with pytest.raises(aiomqtt.MqttError):
            async with broker.client(None):
                pass
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                broker.host, broker.port, username="ha", password="wrong", timeout=10
            ):
                pass
        async with broker.client("q4d-bridge") as client:
            await client.publish(
                "q4d/bridge/home/status", b'{"state": "online"}', qos=1, retain=True
            )
    # A broker restart keeps what it held (persistence true): the retained status survives.
    assert broker.persistence_file.is_file()
    with broker:  # started again on the same port, from the same files
        async with broker.client("ha") as client:
            await client.subscribe("q4d/bridge/home/status", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(client.messages))
    assert message.retain
    assert message.payload == b'{"state": "online"}'
