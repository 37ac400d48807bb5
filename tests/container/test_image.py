"""The bridge's image: the real Containerfile built on the local Debian base with no
network, run under podman on the host network against real parts on loopback: the
compose file's Mosquitto configuration (with passwords) and an sshd standing in for the
seedbox. Run as PUID:PGID (started as root with PUID/PGID, or with --user) it lands
payloads owned by them over lftp and rsync, answers its HEALTHCHECK, stops on SIGTERM
with `offline` retained, and refuses a bad configuration with its reasons."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bridge.test_e2e import digest_tree, make_file
from tests.conftest import allow_loopback_sockets
from tests.container.broker import ComposeBroker, publish, recording
from tests.helpers import podman
from tests.helpers.mqtt import Recorder
from tests.helpers.services import SshServer, free_port

# The first test to ask builds the image (10-15 s here; bounded by podman.BUILD_TIMEOUT).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PUID, PGID = 1234, 1235
BRIDGE_ID = "box"
STATUS = f"q4d/bridge/{BRIDGE_ID}/status"
USERS = {"q4d-bridge": "bridge-pw-4f9a1c", "tester": "tester-pw-77b2e0"}
API_KEY = "container-test-api-key-0123456789"
CONTAINERFILE = podman.REPO / "Containerfile"
DOCS = podman.REPO / "docs" / "container.md"
HEALTHCHECK = ("/opt/q4d/bin/python", "/usr/local/lib/q4d/healthcheck.py")


@dataclass
class Layout:
    """The host folders mounted into the container, and the config it reads."""

    root: Path
    remote: Path  # the seedbox's downloads (the sshd's filesystem: this machine's)

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def library(self) -> Path:
        return self.root / "library"

    def volumes(self) -> dict[Path, str]:
        return {
            self.config: "/config:ro",
            self.secrets: "/run/secrets:ro",
            self.data: "/data",
            self.library: "/library",
        }


def broker_config(port: int) -> dict[str, Any]:
    """The password comes from Q4D_BROKER__PASSWORD_FILE, as in compose.yaml."""
    return {"host": "127.0.0.1", "port": port, "username": "q4d-bridge", "keepalive": 10}


def layout(tmp_path: Path, sshd: SshServer, **config: Any) -> Layout:
    """Config, secrets (owned by PUID:PGID, 0600, as docs/container.md asks), a library
    the media user owns, and a /data folder left to the entrypoint (root's now)."""
    lay = Layout(tmp_path / "mounts", tmp_path / "seedbox")
    for folder in (lay.config, lay.secrets, lay.data, lay.library, lay.remote):
        folder.mkdir(parents=True)
    shutil.copy(sshd.known_hosts, lay.config / "known_hosts")
    secrets = {
        "seedbox_key": sshd.client_key.read_text(),
        "mqtt_password": USERS["q4d-bridge"] + "\n",
        "api_key": API_KEY + "\n",
    }
    for name, text in secrets.items():
        path = lay.secrets / name
        path.write_text(text)
        path.chmod(0o600)
        os.chown(path, PUID, PGID)
    os.chown(lay.library, PUID, PGID)
    raw: dict[str, Any] = {
        "bridge": {"id": BRIDGE_ID},
        "data_dir": "/data",
        "broker": broker_config(1883),
        "seedboxes": [
            {
                "id": "sb1",
                "host": "127.0.0.1",
                "port": sshd.port,
                "user": sshd.user,
                "key": "/run/secrets/seedbox_key",
                "known_hosts": "/config/known_hosts",
                "remote_roots": [str(lay.remote)],
            }
        ],
        "destinations": {"tv": "/library/tv", "movies": "/library/movies"},
        "default_destination": "tv",
        "rules": [
            {"destination": "tv", "match": [{"field": "category", "is": "tv"}]},
            {
                "destination": "movies",
                "match": [{"field": "category", "is": "movies"}],
                "engine": "rsync",
            },
        ],
        "transfers": {"max_attempts": 2, "retry_initial": 0.2},
        **config,
    }
    (lay.config / "bridge.yaml").write_text(yaml.safe_dump(raw))
    return lay


def states(rec: Recorder) -> list[str]:
    return [m.json()["state"] for m in rec.on(STATUS) if m.payload]


def completion(remote: Path, name: str, category: str) -> tuple[str, bytes]:
    path = str(remote / name)
    payload = {
        "v": 1,
        "event_id": hashlib.sha1(path.encode()).hexdigest()[:12],
        "path": path,
        "hash": hashlib.sha1(name.encode()).hexdigest(),
        "category": category,
    }
    return "q4d/seedbox/sb1/completed", json.dumps(payload).encode()


def owners(path: Path) -> set[tuple[int, int]]:
    """(uid, gid) of path and of everything under it."""
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in [path, *path.rglob("*")]}


def test_the_base_is_cached_and_has_every_package_the_build_installs(
    base_image_name: str,
) -> None:
    """A second scripts/base-image is instant, and the local base has every package the
    Containerfile asks apt for: a build on it never needs the network."""
    started = time.monotonic()
    assert podman.base_image() == base_image_name
    assert time.monotonic() - started < 10
    wanted: set[str] = set()
    for step in re.findall(
        r"RUN apt-install-missing ((?:[^&\\\n]|\\\n)+)", CONTAINERFILE.read_text()
    ):
        wanted |= set(step.replace("\\\n", " ").split())
    assert {"python3", "python3-venv", "lftp", "openssh-client", "tini"} <= wanted
    listed = podman.run(base_image_name, "dpkg-query", "-W", "-f", "${Package}\\n")
    assert listed.returncode == 0, listed.stderr
    assert wanted - set(listed.stdout.split()) == set()


def test_the_image_holds_its_tools_and_runs_as_q4d(bridge_image: str) -> None:
    [image] = json.loads(podman.podman("image", "inspect", bridge_image).stdout)
    config = image["Config"]
    assert config["User"] == "q4d"
    assert config["Entrypoint"][0] == "/usr/bin/tini"
    assert config["StopSignal"] == "SIGTERM"
    assert "/data" in config["Volumes"]
    assert "Q4D_CONFIG=/config/bridge.yaml" in config["Env"]
    assert image["Healthcheck"]["Test"] == ["CMD", *HEALTHCHECK]  # kept: docker format

    probe = (
        "import os, shutil; print(os.getuid(), os.getgid()); "
        "print(*(t for t in ('lftp', 'rsync', 'ssh', 'sshpass', 'unar', '7z', 'tini', "
        "'setpriv', 'q4d-bridge') if not shutil.which(t)))"
    )
    result = podman.run(bridge_image, "-c", probe, entrypoint="/opt/q4d/bin/python")
    assert result.returncode == 0, result.stderr
    ids, missing = result.stdout.splitlines()
    assert ids == "1000 1000"
    assert missing == "", f"missing from the image: {missing}"

    version = podman.run(bridge_image, "--version")  # through tini and the entrypoint
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("q4d-bridge ")


@pytest.mark.parametrize("mode", ["puid", "user"])
async def test_lands_payloads_as_puid_pgid_then_stops_offline_on_sigterm(
    bridge_image: str, sshd: SshServer, tmp_path: Path, mode: str
) -> None:
    """Both ways docs/container.md#puid-and-pgid gives: started as root with PUID/PGID
    (the entrypoint gives /data away and drops root), or as `--user PUID:PGID` (compose's
    `user:`; the folders are the user's already). Neither uid has a name in the image."""
    allow_loopback_sockets()
    broker = ComposeBroker(tmp_path / "broker", USERS)
    api = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": free_port(),
        "api_key_file": "/run/secrets/api_key",
    }
    lay = layout(tmp_path, sshd, broker=broker_config(broker.port), api=api)
    season = lay.remote / "Show.S01"
    for n in range(3):
        make_file(season / f"Show.S01E0{n}.mkv", 400_000 + n, seed=n)
    make_file(lay.remote / "Film (2024).mkv", 3_000_000, seed=9)
    env = {"Q4D_BROKER__PASSWORD_FILE": "/run/secrets/mqtt_password"}
    if mode == "puid":
        env |= {"PUID": str(PUID), "PGID": str(PGID)}
        user, options = "root", ()
    else:
        os.chown(lay.data, PUID, PGID)
        # Docker adds no /etc/passwd entry for a --user uid; podman does unless told not to.
        user, options = f"{PUID}:{PGID}", ("--passwd=false",)

    with broker:
        async with recording(broker, "tester", STATUS, f"q4d/bridge/{BRIDGE_ID}/event") as rec:
            started = time.monotonic()
            with podman.running(
                bridge_image, env=env, volumes=lay.volumes(), user=user, options=options
            ) as box:
                try:
                    await rec.wait_for(lambda: "online" in states(rec), 90, "the bridge online")
                    podman.measure(
                        f"bridge container cold start to online ({mode})",
                        f"{time.monotonic() - started:.1f} s",
                    )
                    assert "tini" in box.exec("cat", "/proc/1/cmdline").stdout

                    health = box.healthcheck()  # the API's /health
                    assert health.returncode == 0, health.stdout + health.stderr
                    # and the lock check it falls back to without the API
                    lock = box.exec(*HEALTHCHECK, env={"Q4D_API__ENABLED": "false"})
                    assert lock.returncode == 0, lock.stdout + lock.stderr
                    assert lock.stdout.strip() == "healthy"

                    await publish(
                        broker,
                        "tester",
                        [
                            completion(lay.remote, "Show.S01", "tv"),  # lftp
                            completion(lay.remote, "Film (2024).mkv", "movies"),  # rsync
                        ],
                    )
                    await rec.wait_for(
                        lambda: len(rec.events("completed")) >= 2 or rec.events("failed"),
                        120,
                        "two completed items",
                    )
                    assert not rec.events("failed")

                    stopped = time.monotonic()
                    assert box.stop() == 0  # SIGTERM, handled: not SIGKILL's 137
                    podman.measure(
                        f"bridge container stop ({mode})", f"{time.monotonic() - stopped:.1f} s"
                    )
                except BaseException:
                    print(f"--- container logs ---\n{box.logs()}")
                    raise
                logs = box.logs()
            assert "Traceback" not in logs, logs

        # The payloads landed whole, as PUID:PGID; the state is theirs too.
        assert digest_tree(lay.library / "tv" / "Show.S01") == digest_tree(season)
        film = lay.library / "movies" / "Film (2024).mkv"
        assert digest_tree(film) == digest_tree(lay.remote / "Film (2024).mkv")
        assert owners(lay.library) == {(PUID, PGID)}
        assert owners(lay.data) == {(PUID, PGID)}
        assert (lay.data / "q4d.sqlite3").is_file()

        # Retained on the broker for whoever looks next: offline.
        async with recording(broker, "tester", STATUS) as after:
            await after.wait_for(lambda: after.on(STATUS), 10, "the retained status")
        [retained] = after.on(STATUS)
        assert retained.retain
        assert retained.json()["state"] == "offline"


def test_refuses_a_bad_config_with_its_reasons(
    bridge_image: str, sshd: SshServer, tmp_path: Path
) -> None:
    lay = layout(tmp_path, sshd)
    config = yaml.safe_load((lay.config / "bridge.yaml").read_text())
    config["seedboxes"][0]["port"] = 70000
    config["log_level"] = "loud"  # a second mistake, said together with the first
    (lay.config / "bridge.yaml").write_text(yaml.safe_dump(config))
    with podman.running(bridge_image, volumes=lay.volumes(), network="none") as box:
        assert box.wait(60) == 1
        logs = box.logs()
    # word for word what docs/container.md shows for these two mistakes
    shown = re.search(r"and exit code 1:\n\n```\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert shown, f"{DOCS}: the bad configuration's message"
    assert shown.group(1).strip().splitlines() == logs.strip().splitlines()[-3:], logs

    # No config file and nothing in the environment: both said.
    bare = podman.run(bridge_image)
    assert bare.returncode == 1
    assert "/config/bridge.yaml does not exist" in bare.stderr
    assert "bridge: required key not provided" in bare.stderr

    # PUID/PGID are numbers, or the container does not start.
    named = podman.run(bridge_image, env={"PUID": "media"}, user="root")
    assert named.returncode == 1
    assert "PUID must be a numeric id, got 'media'" in named.stderr


def test_healthcheck_fails_when_no_bridge_runs(
    bridge_image: str, sshd: SshServer, tmp_path: Path
) -> None:
    """The check can fail: a valid config, a lock file a stopped bridge left, no bridge;
    asked by the lock and by the API. Run as compose runs it (`user: PUID:PGID`)."""
    allow_loopback_sockets()
    lay = layout(tmp_path, sshd)
    (lay.data / ".lock").write_text("")
    user = f"{PUID}:{PGID}"
    by_lock = podman.run(
        bridge_image, HEALTHCHECK[1], entrypoint=HEALTHCHECK[0], volumes=lay.volumes(), user=user
    )
    assert by_lock.returncode == 1, by_lock.stderr
    assert by_lock.stdout.strip() == "no q4d-bridge holds /data/.lock"

    port = free_port()
    env = {
        "Q4D_API__ENABLED": "true",
        "Q4D_API__PORT": str(port),
        "Q4D_API__API_KEY_FILE": "/run/secrets/api_key",
    }
    by_api = podman.run(
        bridge_image,
        HEALTHCHECK[1],
        entrypoint=HEALTHCHECK[0],
        volumes=lay.volumes(),
        env=env,
        user=user,
        network="host",
    )
    assert by_api.returncode == 1, by_api.stderr
    assert by_api.stdout.startswith(f"http://127.0.0.1:{port}/health: ")
    assert "Connection refused" in by_api.stdout
