"""`q4d-bridge addon-run`: the add-on's options and the MQTT service from a fake Supervisor
on 127.0.0.1 become a bridge configuration that the real `check-config` accepts, with
every secret in its own 0600 file; bad options stop it with a message that names them."""

from __future__ import annotations

import copy
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from tests.addon.supervisor_fake import TOKEN, addon_run, fake_supervisor, mosquitto_service

MQTT_PASSWORD = "mqtt-Secret-4242"
CLIENT_PASSWORD = "qbt-Secret-9191"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    private = asyncssh.generate_private_key("ssh-ed25519")
    host = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "ssl" / "id_ed25519"
    key_file.parent.mkdir()
    other = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    key_file.write_text(other)
    key_file.chmod(0o644)  # as a file copied in by Samba may be: ssh would refuse it
    return {
        "pasted": private.export_private_key("openssh").decode(),
        "host": host.export_public_key("openssh").decode().strip(),
        "file": str(key_file),
        "file_text": other,
    }


def sample_options(keys: dict[str, str]) -> dict[str, Any]:
    return {
        "bridge_id": "home",
        "bridge_name": "Home media",
        "seedboxes": [
            {
                "id": "seedbox1",
                "host": "127.0.0.1",
                "port": 2222,
                "user": "me",
                # a one-line password field turns the key's line breaks into spaces
                "private_key": keys["pasted"].replace("\n", " "),
                # ssh-keyscan -p 2222 127.0.0.1
                "host_key": f"[127.0.0.1]:2222 {keys['host']}",
                "remote_root": "/home/me/downloads",
                "engine": "sftp",
            },
            {
                "id": "box2",
                "name": "Second box",
                "host": "127.0.0.1",
                "port": 22,
                "user": "me",
                "key_file": keys["file"],
                "trust_on_first_use": True,
                "client_type": "qbittorrent",
                "client_url": "http://127.0.0.1:8080",
                "client_username": "admin",
                "client_password": CLIENT_PASSWORD,
            },
        ],
        "destinations": [
            {"name": "tv", "path": "/media/tv"},
            {"name": "default", "path": "/share/downloads"},
        ],
        "rules": [
            {"destination": "tv", "category": "tv-sonarr", "subdir": "{seedbox}"},
            {"ignore": True, "tag": "keep-remote", "min_size": "50GiB", "tracker": ""},
        ],
        "max_concurrent": 3,
        "bandwidth_limit": "20MiB",
        "log_level": "info",
    }


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", "check-config", "--config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_options_become_a_config_check_config_accepts(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    data = tmp_path / "data"
    service = mosquitto_service("core-mosquitto", 1883, "addons", MQTT_PASSWORD)
    async with fake_supervisor(service) as supervisor:
        ran = await addon_run(sample_options(keys), data, supervisor.url)
    assert ran.code == 0, ran.err
    assert supervisor.requests == [f"Bearer {TOKEN}"]
    assert "found by Home Assistant on q4d/bridge/home/status" in ran.out
    assert "MQTT core-mosquitto:1883 as 'addons' (the Supervisor's MQTT service)" in ran.out

    checked = check_config(data / "bridge.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "OK (bridge 'home', 2 seedbox(es), 2 destination(s), 2 rule(s))" in checked.stdout

    config = yaml.safe_load((data / "bridge.yaml").read_text())
    assert config["broker"] == {
        "topic_prefix": "q4d",  # what the integration discovers
        "host": "core-mosquitto",
        "port": 1883,
        "username": "addons",
        "password_file": str(data / "secrets" / "mqtt_password"),
    }
    assert config["data_dir"] == str(data / "bridge")
    first, second = config["seedboxes"]
    assert first["key"] == str(data / "ssh" / "seedbox1.key")
    assert first["known_hosts"] == str(data / "ssh" / "seedbox1.known_hosts")
    assert first["trust_on_first_use"] is False
    assert first["remote_roots"] == ["/home/me/downloads"]
    assert "known_hosts" not in second and second["trust_on_first_use"] is True
    assert second["client"]["password_file"] == str(data / "secrets" / "box2.client_password")
    assert config["rules"][1] == {
        "match": [{"field": "tags", "is": "keep-remote"}, {"field": "size", "gt": 50 * 1024**3}],
        "ignore": True,
    }
    assert config["transfers"] == {"max_concurrent": 3, "bandwidth_limit": 20 * 1024**2}

    # the secrets: each in its own 0600 file, none in the config or the output
    files = {
        data / "secrets" / "mqtt_password": MQTT_PASSWORD,
        data / "secrets" / "box2.client_password": CLIENT_PASSWORD,
        data / "ssh" / "seedbox1.key": keys["pasted"],
        data / "ssh" / "box2.key": keys["file_text"],
        data / "ssh" / "seedbox1.known_hosts": f"[127.0.0.1]:2222 {keys['host']}\n",
        data / "bridge.yaml": None,
    }
    for path, text in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        if text is not None:
            assert path.read_text() == text, path
    assert stat.S_IMODE((data / "secrets").stat().st_mode) == 0o700
    key_lines = [line for line in keys["pasted"].splitlines() if "-----" not in line]
    everything = (data / "bridge.yaml").read_text() + ran.out + ran.err + checked.stdout
    for secret in (MQTT_PASSWORD, CLIENT_PASSWORD, TOKEN, *key_lines):
        assert secret not in everything


async def test_a_later_start_drops_what_the_options_no_longer_have(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    data = tmp_path / "data"
    options = sample_options(keys)
    async with fake_supervisor(mosquitto_service("h", 1883, "u", MQTT_PASSWORD)) as supervisor:
        assert (await addon_run(options, data, supervisor.url)).code == 0
        del options["seedboxes"][1]
        supervisor.service = mosquitto_service("h", 1883, "", "")  # a broker without login
        ran = await addon_run(options, data, supervisor.url)
    assert ran.code == 0, ran.err
    assert sorted(p.name for p in (data / "ssh").iterdir()) == [
        "seedbox1.key",
        "seedbox1.known_hosts",
    ]
    assert list((data / "secrets").iterdir()) == []
    broker = yaml.safe_load((data / "bridge.yaml").read_text())["broker"]
    assert "username" not in broker and "password_file" not in broker


async def test_own_broker_needs_no_supervisor(tmp_path: Path, keys: dict[str, str]) -> None:
    options = sample_options(keys) | {
        "mqtt_host": "192.168.1.5",
        "mqtt_username": "q4d",
        "mqtt_password": MQTT_PASSWORD,
    }
    async with fake_supervisor(None) as supervisor:
        ran = await addon_run(options, tmp_path / "data", supervisor.url)
    assert ran.code == 0, ran.err
    assert supervisor.requests == []
    broker = yaml.safe_load((tmp_path / "data" / "bridge.yaml").read_text())["broker"]
    assert (broker["host"], broker["port"], broker["username"]) == ("192.168.1.5", 1883, "q4d")


@pytest.mark.parametrize("given", ["the defaults", "left out"])
async def test_no_seedbox_nor_destination_starts_idle(tmp_path: Path, given: str) -> None:
    """The HA-first install: the broker alone; seedboxes, destinations and rules are
    added later from Home Assistant (the bridge's runtime layer). The add-on's default
    options are such a start."""
    data = tmp_path / "data"
    options: dict[str, Any] = {"bridge_id": "home", "log_level": "info"}
    if given == "the defaults":
        config_yaml = Path(__file__).parents[2] / "addon/q4d-bridge/config.yaml"
        options = yaml.safe_load(config_yaml.read_text())["options"]
        assert (options["seedboxes"], options["destinations"]) == ([], [])
    async with fake_supervisor(mosquitto_service("h", 1883, "u", MQTT_PASSWORD)) as supervisor:
        ran = await addon_run(options, data, supervisor.url)
    assert ran.code == 0, ran.err
    assert "  seedboxes: none yet (add them from Home Assistant)" in ran.out
    assert "  destinations: none yet (add them from Home Assistant)" in ran.out
    config = yaml.safe_load((data / "bridge.yaml").read_text())
    assert (config["seedboxes"], config["destinations"], config["rules"]) == ([], {}, [])
    checked = check_config(data / "bridge.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "OK (bridge 'home', 0 seedbox(es), 0 destination(s), 0 rule(s))" in checked.stdout
    assert "note: no seedbox yet: add one from Home Assistant" in checked.stdout


def _docs() -> str:
    return (Path(__file__).parents[2] / "addon/q4d-bridge/DOCS.md").read_text()


def _docs_yaml(number: int) -> Any:
    return re.findall(r"```yaml\n(.*?)```", _docs(), re.DOTALL)[number]


async def test_the_documented_example_works(tmp_path: Path, keys: dict[str, str]) -> None:
    """DOCS.md's options and its more-settings file, with this test's keys and folders."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "sonarr.key").write_text("0123456789abcdef\n")
    extra = config_dir / "q4d.yaml"
    extra.write_text(_docs_yaml(1).replace("/config/", f"{config_dir}/"))
    options = yaml.safe_load(_docs_yaml(0))
    seedbox = options["seedboxes"][0]
    assert seedbox["host_key"].startswith("ssh-ed25519 AAAA")
    seedbox.update(key_file=keys["file"], host_key=keys["host"], client_password=CLIENT_PASSWORD)
    options["extra_config"] = str(extra)
    service = mosquitto_service("core-mosquitto", 1883, "addons", "p")
    async with fake_supervisor(service) as supervisor:
        ran = await addon_run(options, tmp_path / "data", supervisor.url)
    assert ran.code == 0, ran.err
    # The Log tab shows what DOCS.md says a good start of these options prints.
    printed = [line.strip() for line in ran.out.splitlines()]
    good_start = re.search(r"A good start prints:\n\n *```\n(.*?)```", _docs(), re.DOTALL)
    assert good_start, "DOCS.md: the good start's log block"
    for line in good_start.group(1).strip().splitlines():
        assert line.strip() in printed, f"DOCS.md's {line.strip()!r} is not in:\n{ran.out}"
    checked = check_config(tmp_path / "data" / "bridge.yaml")
    assert checked.returncode == 0, checked.stderr
    config = yaml.safe_load((tmp_path / "data" / "bridge.yaml").read_text())
    assert config["seedboxes"][0]["broker_forward"] == {"port": 18830}
    assert config["seedboxes"][0]["user"] == "me"  # merged into the option's seedbox
    assert config["destinations"]["tv"] == {"path": "/media/tv", "arr_import": "sonarr"}
    assert config["transfers"] == {"max_concurrent": 2, "bandwidth_limit": 20 * 1024**2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("data_dir: /tmp/x\n", "data_dir come from the add-on (discovery needs them)"),
        ("broker: {topic_prefix: home}\n", "broker.topic_prefix come from the add-on"),
        ("- 1\n", "the top level must be a mapping of bridge settings"),
        ("transfers: {verify: maybe}\n", "transfers.verify: expected bool (in "),
    ],
)
async def test_extra_config_may_not_break_discovery(
    tmp_path: Path, keys: dict[str, str], extra: str, message: str
) -> None:
    path = tmp_path / "q4d.yaml"
    path.write_text(extra)
    options = sample_options(keys) | {"extra_config": str(path)}
    async with fake_supervisor(mosquitto_service("h", 1883, "u", "p")) as supervisor:
        ran = await addon_run(options, tmp_path / "data", supervisor.url)
    assert ran.code == 1
    assert message in ran.err


BAD_OPTIONS: list[tuple[str, Any, str]] = [
    (
        "no key",
        lambda o: o["seedboxes"][0].pop("private_key"),
        "seedboxes[0]: set key_file or private_key (an SSH key), or password",
    ),
    (
        "two keys",
        lambda o: o["seedboxes"][1].update(private_key="x"),
        "seedboxes[1]: set key_file or private_key (one of the two)",
    ),
    (
        "key file missing",
        lambda o: o["seedboxes"][1].update(key_file="/ssl/nowhere/id_ed25519"),
        "seedboxes[1].key_file: cannot read /ssl/nowhere/id_ed25519: No such file or directory "
        "(keep the key in /ssl",
    ),
    (
        "not a key",
        lambda o: o["seedboxes"][0].update(private_key="hunter2"),
        "seedboxes[0].private_key: not a private key (expected -----BEGIN OPENSSH PRIVATE KEY",
    ),
    (
        "no host key",
        lambda o: o["seedboxes"][0].pop("host_key"),
        "seedboxes[0].host_key: required (the seedbox's public host key, a line of "
        "`ssh-keyscan -p 2222 127.0.0.1`), unless trust_on_first_use is on",
    ),
    (
        "bad host key",
        lambda o: o["seedboxes"][0].update(host_key="ssh-ed25519 AAAAnotakey"),
        "seedboxes[0].host_key: not a public host key",
    ),
    (
        "library outside the storage",
        lambda o: o["destinations"][0].update(path="/data/tv"),
        "destinations[0].path: must be a folder inside /media or /share",
    ),
    (
        "client password without a client",
        lambda o: o["seedboxes"][0].update(client_password="x"),
        "seedboxes[0]: client_password: the torrent client needs client_type and client_url",
    ),
    (
        "client without its url",
        lambda o: o["seedboxes"][1].pop("client_url"),
        "seedboxes[1]: client_type, client_username, client_password: the torrent client needs",
    ),
    (
        "destination twice",
        lambda o: o["destinations"][1].update(name="tv"),
        "destinations: 'tv' named twice",
    ),
    (
        # an empty list is a valid start (test_no_seedbox_nor_destination_starts_idle)
        "a rule naming a destination with none configured",
        lambda o: o.update(seedboxes=[], destinations=[]),
        "rules[0].destination: 'tv' is not in destinations",
    ),
    ("bad level", lambda o: o.update(log_level="loud"), "log_level: value must be one of"),
    ("bad size", lambda o: o.update(bandwidth_limit="20MB"), "bandwidth_limit: expected a size"),
    (
        "bridge refuses it",
        lambda o: o["seedboxes"][1].update(client_url="ftp://127.0.0.1"),
        "seedboxes[1].client.url: must be an http(s) URL (in ",
    ),
    (
        "unknown destination",
        lambda o: o["rules"][0].update(destination="films"),
        "rules[0].destination: 'films' is not in destinations",
    ),
    ("not json", "{seedboxes: [", "options.json: not valid JSON"),
]


@pytest.mark.parametrize(
    ("change", "message"), [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS]
)
async def test_bad_options_stop_it_clearly(
    tmp_path: Path, keys: dict[str, str], change: Any, message: str
) -> None:
    options: dict[str, Any] | str = change
    if callable(change):
        options = copy.deepcopy(sample_options(keys))
        change(options)
    async with fake_supervisor(mosquitto_service("h", 1883, "u", MQTT_PASSWORD)) as supervisor:
        ran = await addon_run(options, tmp_path / "data", supervisor.url)
    assert ran.code == 1
    assert ran.err.startswith("q4d-bridge add-on: cannot start:\n  - "), ran.err
    assert message in ran.err
    assert MQTT_PASSWORD not in ran.err + ran.out


@pytest.mark.parametrize(
    ("service", "token", "message"),
    [
        (
            None,
            TOKEN,
            "no MQTT broker is available: install and start the Mosquitto broker add-on, "
            "or set mqtt_host",
        ),
        (
            mosquitto_service("h", 1883, "u", "p"),
            "wrong-token",
            "Supervisor refused the MQTT service (403: Forbidden)",
        ),
        (
            mosquitto_service("h", 1883, "u", "p"),
            "",
            "SUPERVISOR_TOKEN is not set",
        ),
    ],
    ids=["no broker add-on", "wrong token", "no token"],
)
async def test_no_broker_from_the_supervisor_stops_it_clearly(
    tmp_path: Path, keys: dict[str, str], service: Any, token: str, message: str
) -> None:
    async with fake_supervisor(service) as supervisor:
        ran = await addon_run(sample_options(keys), tmp_path / "data", supervisor.url, token=token)
    assert ran.code == 1
    assert message in ran.err
    assert not (tmp_path / "data" / "bridge.yaml").exists()


async def test_an_unreachable_supervisor_stops_it_clearly(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    async with fake_supervisor(None) as supervisor:
        url = supervisor.url
    ran = await addon_run(sample_options(keys), tmp_path / "data", url)  # nothing listens now
    assert ran.code == 1
    assert f"Supervisor at {url} not reachable" in ran.err
