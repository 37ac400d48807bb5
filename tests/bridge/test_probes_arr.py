"""`config_test` of a Sonarr or Radarr instance against the stand-in for their v3 API
(tests/bridge/test_arr_import.py's, which answers `system/status` as the apps' source
does): the app's name and version; a refused key, a wrong URL base, another app at the
URL, a web page, a failing proxy, a closed port and a silent one; values the schema
refuses; an instance of the running configuration by name; the key in no answer or log."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import probes
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.mqtt.probe_commands import ProbeDesk
from q4d_bridge.probes import ProbeError

from tests.bridge import test_arr_import
from tests.bridge.test_arr_import import KEY, FakeArr
from tests.helpers.configs import bridge_config
from tests.helpers.services import LOOPBACK, free_port

pytestmark = pytest.mark.timeout(60)
arr = test_arr_import.arr  # the stand-in's fixture: `await arr(**settings)` -> FakeArr
Serve = Any


def running_config(tmp_path: Path, **arr_section: Any) -> Config:
    for name in ("key", "known_hosts"):  # the seedbox is not tested here, but they must exist
        (tmp_path / name).touch()
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts",
    )  # fmt: skip
    raw["arr"] = arr_section
    return parse_config(raw)


def sonarr_value(url: str, **changes: Any) -> dict[str, Any]:
    value = {"type": "sonarr", "url": url, "api_key": KEY, "timeout": "5s"} | changes
    return {k: v for k, v in value.items() if v is not None}


async def failure(value: Any, config: Config, **kw: Any) -> ProbeError:
    with pytest.raises(ProbeError) as err:
        await probes.run("arr", value, config, **kw)
    assert KEY not in str(err.value.message) and KEY not in str(err.value.detail)
    return err.value


async def test_sonarr_and_radarr_answer_name_and_version(tmp_path: Path, arr: Serve) -> None:
    sonarr: FakeArr = await arr()
    radarr: FakeArr = await arr(app="radarr", version="5.14.0.9383")
    config = running_config(tmp_path)
    found = await probes.run("arr", sonarr_value(sonarr.url), config)
    assert found == {
        "type": "sonarr", "url": sonarr.url, "app_name": "Sonarr", "instance_name": "Sonarr",
        "version": "4.0.14.2939",
    }  # fmt: skip
    [seen] = sonarr.seen
    assert (seen.method, seen.path, seen.headers["X-Api-Key"]) == (
        "GET", "/api/v3/system/status", KEY,
    )  # fmt: skip
    found = await probes.run("arr", sonarr_value(radarr.url, type="radarr"), config)
    assert (found["app_name"], found["version"]) == ("Radarr", "5.14.0.9383")
    assert radarr.commands == {} and sonarr.commands == {}  # nothing asked of the apps


async def test_an_instance_of_the_running_configuration(tmp_path: Path, arr: Serve) -> None:
    radarr: FakeArr = await arr(app="radarr")
    config = running_config(tmp_path, films={"type": "radarr", "url": radarr.url, "api_key": KEY})
    found = await probes.run("arr", {"id": "films"}, config)
    assert (found["type"], found["app_name"]) == ("radarr", "Radarr")
    error = await failure({"id": "tv"}, config)
    assert (error.code, error.message) == ("not_found", "no arr instance 'tv' (known: films)")


async def test_the_key_from_a_saved_instance_s_file(tmp_path: Path, arr: Serve) -> None:
    """An edit in Home Assistant tests new settings with the key the layer kept; no
    other file is read (its text would go to the URL as the key)."""
    sonarr: FakeArr = await arr()
    config = running_config(tmp_path)
    key_file = config.data_dir / "secrets" / "arr-tv-api_key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(KEY + "\n")
    value = sonarr_value(sonarr.url, api_key=None, api_key_file=str(key_file))
    assert (await probes.run("arr", value, config))["app_name"] == "Sonarr"
    for elsewhere in (tmp_path / "key", "/etc/hostname", str(tmp_path / "arr-tv-api_key")):
        value["api_key_file"] = str(elsewhere)
        error = await failure(value, config)
        assert (error.code, error.detail["errors"]) == (
            "invalid", ["api_key_file: only the key file of a saved instance; send api_key"],
        )  # fmt: skip
    assert len(sonarr.seen) == 1
    value["api_key_file"] = str(key_file.with_name("arr-gone-api_key"))
    error = await failure(value, config)
    assert error.detail["errors"] == [
        "api_key: required key not provided",
        f"api_key_file: cannot read {key_file.with_name('arr-gone-api_key')}: "
        "No such file or directory",
    ]


async def test_what_the_app_refuses_or_is_not(tmp_path: Path, arr: Serve) -> None:
    sonarr: FakeArr = await arr()
    config = running_config(tmp_path)
    error = await failure(sonarr_value(sonarr.url, api_key="not-" + KEY), config)
    assert (error.code, error.message) == (
        "auth_failed", f"Sonarr at {sonarr.url}: API key refused (HTTP 401)",
    )  # fmt: skip
    assert "not-" + KEY not in error.message
    error = await failure(sonarr_value(sonarr.url + "/sonarr"), config)  # a wrong URL base
    assert (error.code, error.message) == (
        "unsupported", f"no Sonarr v3 API at {sonarr.url}/sonarr (HTTP 404)",
    )  # fmt: skip
    error = await failure(sonarr_value(sonarr.url, type="radarr"), config)  # another app
    assert (error.code, error.message) == ("unsupported", f"{sonarr.url} is Sonarr, not Radarr")
    assert error.detail == {"app_name": "Sonarr", "version": "4.0.14.2939"}
    sonarr.answers = ["<html>login</html>"]  # a web page at the URL
    error = await failure(sonarr_value(sonarr.url), config)
    assert (error.code, error.message) == (
        "unsupported", f"no Sonarr v3 API at {sonarr.url} (not a system status)",
    )  # fmt: skip
    sonarr.answers = [302]  # a login page in front: not followed
    assert (await failure(sonarr_value(sonarr.url), config)).code == "unsupported"
    sonarr.answers = [502]  # a proxy whose app is down
    error = await failure(sonarr_value(sonarr.url), config)
    assert (error.code, error.message) == ("unreachable", f"Sonarr at {sonarr.url}: HTTP 502")


async def test_no_answer(tmp_path: Path) -> None:
    config = running_config(tmp_path)
    closed = f"http://{LOOPBACK}:{free_port()}"
    error = await failure(sonarr_value(closed), config)
    assert error.code == "unreachable" and error.message.startswith(
        f"Sonarr at {closed} unreachable"
    )
    with socket.socket() as silent:  # accepts (the backlog) and never answers
        silent.bind((LOOPBACK, 0))
        silent.listen()
        url = f"http://{LOOPBACK}:{silent.getsockname()[1]}"
        error = await failure(sonarr_value(url, timeout="1s"), config)
        assert (error.code, error.message) == ("timeout", f"Sonarr at {url}: no answer within 1s")
        error = await failure(sonarr_value(url), config, within=0.5)  # the probe's own bound
        assert (error.code, error.message) == ("timeout", "no answer within 0.5 s")


async def test_values_the_schema_refuses(tmp_path: Path) -> None:
    config = running_config(tmp_path)
    error = await failure({"type": "lidarr", "url": "ftp://x", "timeout": "0s"}, config)
    assert error.code == "invalid"
    assert set(error.detail["fields"]) == {"type", "url", "api_key", "timeout"}
    assert (await failure("http://x", config)).code == "invalid"


async def test_the_key_stays_out_of_answers_and_logs(
    tmp_path: Path, arr: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sonarr: FakeArr = await arr()
    desk = ProbeDesk(lambda: running_config(tmp_path), timeout=5)
    sonarr.answers = [f"<html>proxy: X-Api-Key {KEY} refused</html>"]
    with pytest.raises(ProbeError) as err:
        await desk.test({"kind": "arr", "value": sonarr_value(sonarr.url)})
    assert err.value.code == "unsupported"
    found = await desk.test({"kind": "arr", "value": sonarr_value(sonarr.url)})
    assert found["kind"] == "arr" and KEY not in str(found)
    assert KEY not in caplog.text and "config_test arr: ok" in caplog.text
