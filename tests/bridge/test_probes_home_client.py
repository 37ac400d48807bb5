"""The home-client test (`config_test` kind `home_client`) against a real qbittorrent-nox
and a real transmission-daemon on loopback: login and version; a wrong password
(auth_failed, the password in no answer and no log line); a port nobody listens on
(unreachable); another client type at the URL (unsupported); a client of the running
configuration by id; a password file only from the bridge's secrets; a value the schema
refuses."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import probes
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.mqtt.probe_commands import ProbeDesk
from q4d_bridge.probes import ProbeError

from tests.conftest import allow_loopback_sockets
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import LOOPBACK, free_port
from tests.seedbox.support import Transmission, need

pytestmark = pytest.mark.timeout(90)
WRONG = "a-wrong-password"


@pytest.fixture(scope="module")
def qbt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QBittorrent]:
    allow_loopback_sockets()  # module scope: before the per-test fixture allows them
    with QBittorrent(tmp_path_factory.mktemp("home-qbt")) as daemon:
        yield daemon


@pytest.fixture
def transmission(tmp_path: Path) -> Iterator[Transmission]:
    need("transmission-daemon")
    with Transmission(tmp_path / "transmission") as daemon:
        yield daemon


def settings(daemon: QBittorrent | Transmission, **changes: Any) -> dict[str, Any]:
    kind = "qbittorrent" if isinstance(daemon, QBittorrent) else "transmission"
    value = {"type": kind, "url": daemon.url, "username": daemon.username,
             "password": daemon.password}  # fmt: skip
    return {k: v for k, v in (value | changes).items() if v is not None}


def running_config(raw: dict[str, Any], **home_clients: dict[str, Any]) -> Config:
    return parse_config({**copy.deepcopy(raw), "home_clients": home_clients})


async def failure(value: Any, config: Config) -> ProbeError:
    with pytest.raises(ProbeError) as err:
        await probes.run("home_client", value, config)
    return err.value


async def test_qbittorrent(
    raw: dict[str, Any], qbt: QBittorrent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = running_config(raw, home=settings(qbt))
    found = await probes.run("home_client", settings(qbt), config)
    assert found["type"] == "qbittorrent"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", found["version"]), found
    assert isinstance(found["torrents"], int) and found["active_downloads"] == 0
    by_id = await probes.run("home_client", {"id": "home"}, config)
    assert (by_id["type"], by_id["version"]) == ("qbittorrent", found["version"])

    # Over the desk config_test runs on: the wrong password in no answer, no log line.
    desk = ProbeDesk(lambda: config)
    with pytest.raises(ProbeError) as refused:
        await desk.test({"kind": "home_client", "value": settings(qbt, password=WRONG)})
    err = refused.value
    assert (err.code, err.message, err.detail) == (
        "auth_failed", "qBittorrent login failed (check username/password)",
        {"type": "qbittorrent"},
    )  # fmt: skip
    assert WRONG not in caplog.text and "config_test home_client: auth_failed" in caplog.text

    err = await failure(settings(qbt, url=f"http://{LOOPBACK}:{free_port()}"), config)
    assert err.code == "unreachable", err.message
    # Transmission's RPC asked of qBittorrent's WebUI: it answers, not as Transmission.
    err = await failure(settings(qbt, type="transmission"), config)
    assert (err.code, err.detail) == ("unsupported", {"type": "transmission"}), err.message
    err = await failure({"id": "other"}, config)
    assert (err.code, err.message) == ("not_found", "no home client 'other' (known: home)")


async def test_transmission(raw: dict[str, Any], transmission: Transmission) -> None:
    config = running_config(raw)
    found = await probes.run("home_client", settings(transmission), config)
    assert found["type"] == "transmission"
    assert found["version"].split()[0].count(".") >= 1  # e.g. "4.0.6 (38c164933e)"
    err = await failure(settings(transmission, password=WRONG), config)
    assert (err.code, err.message) == (
        "auth_failed", "Transmission login failed (check username/password)",
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{free_port()}/transmission/rpc"
    err = await failure(settings(transmission, url=url), config)
    assert err.code == "unreachable", err.message
    err = await failure({"id": "home"}, config)
    assert (err.code, err.message) == ("not_found", "no home client 'home' (known: none)")


async def test_a_password_file_only_from_the_bridges_secrets(
    raw: dict[str, Any], qbt: QBittorrent, tmp_path: Path
) -> None:
    """A reconfigure is tested with the entry's own file (as config_get shows it);
    another file would go to the URL as the password."""
    config = running_config(raw)
    kept = config.data_dir / "secrets" / "home_clients-home-password"
    kept.parent.mkdir(parents=True)
    kept.write_text(qbt.password + "\n")
    found = await probes.run("home_client", settings(qbt, password=None,
                                                     password_file=str(kept)), config)  # fmt: skip
    assert found["type"] == "qbittorrent"

    elsewhere = tmp_path / "password"
    elsewhere.write_text(qbt.password)
    err = await failure(settings(qbt, password=None, password_file=str(elsewhere)), config)
    assert (err.code, err.detail["fields"]) == (
        "invalid", {"password_file": "only a secret file the bridge keeps; send password"},
    )  # fmt: skip
    err = await failure(
        settings(qbt, password=None, password_file=str(kept.parent / "missing")), config
    )
    assert err.code == "invalid"
    assert err.detail["errors"][0].startswith("password_file: cannot read "), err.detail


async def test_a_value_the_schema_refuses(raw: dict[str, Any]) -> None:
    config = running_config(raw)
    err = await failure({"type": "deluge", "url": "ftp://x", "verify_tls": "yes"}, config)
    assert err.code == "invalid"
    assert err.detail["fields"] == {
        "type": "value must be one of ['qbittorrent', 'transmission']",
        "url": "must be an http(s) URL such as http://127.0.0.1:8989",
        "verify_tls": "expected bool",
    }
