"""Home torrent clients (`home_clients`) in the runtime configuration layer, through the
command desk on a real store and real secret files: a client set from Home Assistant
with its password kept as a 0600 file (never in the store, an answer or the retained
body), listed redacted with has_password, the password kept when an edit leaves it out
and dropped by null, values the loader refuses, another file refused as the password,
YAML clients read-only, and a client a hand-off names kept until the hand-off goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from q4d_bridge import cli
from q4d_bridge.config.source import ConfigSource

from tests.bridge.test_runtime_config import Env, make_env, mode

PASSWORD = "hc-Secret-62b9"
OTHER_PASSWORD = "hc-Other-0d4f"


def home(**changes: Any) -> dict[str, Any]:
    value = {"type": "qbittorrent", "url": "http://127.0.0.1:8080", "username": "admin",
             "password": PASSWORD, "verify_tls": True}  # fmt: skip
    return {k: v for k, v in (value | changes).items() if v != "-"}


async def test_a_client_keeps_its_password_in_a_private_file(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    env: Env = make_env(raw, tmp_path)
    result = await env.ok("config_set", section="home_clients", id="home", value=home())
    assert result["revision"] == 1
    new, _ = env.applied[-1]
    assert (new.home_clients["home"].type, new.home_clients["home"].password) == (
        "qbittorrent", PASSWORD,
    )  # fmt: skip
    secret = env.data / "secrets" / "home_clients-home-password"
    assert secret.read_text() == PASSWORD
    assert (mode(secret), mode(secret.parent)) == (0o600, 0o700)
    [(section, ident, stored)] = env.stored()
    stored_value = {"type": "qbittorrent", "url": "http://127.0.0.1:8080", "username": "admin",
                    "verify_tls": True, "password_file": str(secret)}  # fmt: skip
    assert (section, ident, json.loads(stored)) == ("home_clients", "home", stored_value)

    body = await env.ok("config_get")
    [entry] = body["sections"]["home_clients"]
    assert entry == {"id": "home", "source": "runtime", "has_password": True,
                     "value": stored_value}  # fmt: skip
    assert env.published[-1]["sections"]["home_clients"] == [entry]

    # An edit without the password keeps it; with one, replaces it; null drops it.
    await env.ok("config_set", section="home_clients", id="home",
                 value=home(password="-", recheck_timeout="1h"))  # fmt: skip
    new, _ = env.applied[-1]
    assert (new.home_clients["home"].password, new.home_clients["home"].recheck_timeout) == (
        PASSWORD, 3600.0,
    )  # fmt: skip
    # the stored file's path sent back, as config_get shows it: the same
    await env.ok("config_set", section="home_clients", id="home",
                 value=home(password="-", password_file=str(secret)))  # fmt: skip
    assert env.applied[-1][0].home_clients["home"].password == PASSWORD
    await env.ok("config_set", section="home_clients", id="home",
                 value=home(password=OTHER_PASSWORD))  # fmt: skip
    assert env.applied[-1][0].home_clients["home"].password == OTHER_PASSWORD
    assert secret.read_text() == OTHER_PASSWORD
    await env.ok("config_set", section="home_clients", id="home",
                 value=home(password=None, username="-"))  # fmt: skip
    assert env.applied[-1][0].home_clients["home"].password is None and not secret.exists()
    [entry] = (await env.ok("config_get"))["sections"]["home_clients"]
    assert entry["has_password"] is False and "password_file" not in entry["value"]
    assert PASSWORD not in env.said() and OTHER_PASSWORD not in env.said()
    assert not any(PASSWORD in s or OTHER_PASSWORD in s for row in env.stored() for s in row)

    await env.ok("config_set", section="home_clients", id="home", value=home())
    await env.ok("config_remove", section="home_clients", id="home")
    assert env.applied[-1][0].home_clients == {} and not secret.exists() and env.stored() == []


async def test_values_refused_leave_the_layer_as_it_was(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    env: Env = make_env(raw, tmp_path)
    error = await env.refused("config_set", "invalid", section="home_clients", id="home",
                              value=home(type="deluge", url="ftp://x"))  # fmt: skip
    assert set(error["fields"]) == {"type", "url"}
    assert (
        "home_clients.home.type: value must be one of ['qbittorrent', 'transmission']"
        in error["errors"]
    )
    error = await env.refused("config_set", "invalid", section="home_clients", id="home",
                              value=home(password="-", password_file="/etc/hostname"))  # fmt: skip
    assert error["fields"] == {"password_file": "send the secret itself (password), not a file"}
    assert error["errors"] == [
        "home_clients.home.password_file: send the secret itself (password), not a file"
    ]
    error = await env.refused("config_set", "invalid", section="home_clients", id="home",
                              value=home(password=" padded "))  # fmt: skip
    assert error["fields"] == {"password": "must not start or end with a space or line break"}
    error = await env.refused("config_set", "invalid", section="home_clients", id="home",
                              value=home(recheck_timeout=0))  # fmt: skip
    assert error["fields"] == {"recheck_timeout": "value must be at least 1"}
    error = await env.refused("config_set", "invalid", section="home_clients", id="home",
                              value="http://127.0.0.1:8080")  # fmt: skip
    assert error["fields"] == {"base": "expected a mapping of keys"}
    assert env.stored() == [] and env.applied == [] and env.secret_files() == []
    assert PASSWORD not in env.said()


async def test_yaml_clients_are_read_only(raw: dict[str, Any], tmp_path: Path) -> None:
    raw["home_clients"] = {"nas": {"type": "transmission", "url": "http://127.0.0.1:9091",
                                   "password": PASSWORD}}  # fmt: skip
    env: Env = make_env(raw, tmp_path)
    [entry] = (await env.ok("config_get"))["sections"]["home_clients"]
    assert (entry["id"], entry["source"], entry["has_password"]) == ("nas", "yaml", True)
    assert entry["value"]["password"] == "***" and PASSWORD not in env.said()
    error = await env.refused("config_set", "read_only", section="home_clients", id="nas",
                              value=home())  # fmt: skip
    assert error["message"] == "home_clients.nas is defined in the YAML file; edit it there"
    await env.refused("config_remove", "read_only", section="home_clients", id="nas")
    await env.refused("config_remove", "not_found", section="home_clients", id="other")


async def test_a_client_a_handoff_names_stays(raw: dict[str, Any], tmp_path: Path) -> None:
    env: Env = make_env(raw, tmp_path)
    rule = {"destination": "tv", "match": [{"field": "category", "is": "tv"}],
            "handoff": {"client": "home", "tags": ["q4d"]}}  # fmt: skip
    error = await env.refused("config_set", "invalid", section="rules", id="shows", value=rule)
    assert error["errors"] == ["rules[0].handoff: 'home' is not under home_clients"]
    await env.ok("config_set", section="home_clients", id="home", value=home())
    await env.ok("config_set", section="rules", id="shows", value=rule)
    await env.ok("config_set", section="destinations", id="films",
                 value={"path": str(env.data / "films"), "handoff": "home"})  # fmt: skip
    error = await env.refused("config_remove", "in_use", section="home_clients", id="home")
    assert error["message"] == "home client home is still used by destinations.films, rules.shows"
    assert error["used_by"] == ["destinations.films", "rules.shows"]
    await env.ok("config_remove", section="rules", id="shows")
    await env.ok("config_remove", section="destinations", id="films")
    await env.ok("config_remove", section="home_clients", id="home")
    assert env.stored() == [] and env.secret_files() == []


async def test_export_holds_the_client_and_passes_check_config(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    env: Env = make_env(raw, tmp_path)
    await env.ok("config_set", section="home_clients", id="home", value=home())
    await env.ok("config_set", section="dispatch", id="dispatch",
                 value={"disk_weight": 2, "size_estimate": "20GiB"})  # fmt: skip
    assert cli.main(["config", "export", "-c", str(path)]) == 0
    exported = capsys.readouterr().out
    assert PASSWORD not in exported
    moved = tmp_path / "exported.yaml"
    moved.write_text(exported)
    assert cli.main(["check-config", "-c", str(moved)]) == 0
    written = yaml.safe_load(exported)
    assert written["home_clients"]["home"]["password_file"] == str(
        env.data / "secrets" / "home_clients-home-password"
    )
    assert written["dispatch"] == {"disk_weight": 2, "size_estimate": "20GiB"}
    loaded = ConfigSource.read(moved, {}).load()
    assert loaded.home_clients == env.config.home_clients
    assert loaded.home_clients["home"].password == PASSWORD
    assert loaded.dispatch == env.config.dispatch
    assert (loaded.dispatch.disk_weight, loaded.dispatch.size_estimate) == (2.0, 20 * 1024**3)
