"""The `api:` section: off by default, on loopback when on, secrets from files and
the environment and never in a repr, mistakes named by their key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.rules import category_destination

from tests.helpers.configs import errors_of


def test_off_by_default_and_on_loopback_when_on(raw: dict[str, Any]) -> None:
    api = parse_config(copy.deepcopy(raw)).api
    assert not api.enabled
    raw["api"] = {"enabled": True, "username": "sonarr", "password": "s3cret-pw"}
    api = parse_config(raw).api
    assert (api.enabled, api.host, api.port) == (True, "127.0.0.1", 8090)
    assert (api.on_delete, api.delete_seedbox_data, api.delete_home_copy) == ("remove", True, False)
    assert api.session_lifetime == 3600 and api.api_key is None and api.admin_key is None


def test_secrets_from_files_and_the_environment_never_shown(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    (tmp_path / "key").write_text("k" * 32)
    raw["api"] = {
        "enabled": True, "host": "0.0.0.0", "port": 18090, "username": "arr",
        "password_file": str(tmp_path / "pw"), "api_key_file": str(tmp_path / "key"),
        "session_lifetime": "15m", "on_delete": "keep_seeding", "delete_home_copy": True,
    }  # fmt: skip
    admin = "a" * 20
    api = parse_config(raw, {"Q4D_API__ADMIN_KEY": admin}).api
    assert (api.password, api.api_key, api.admin_key) == ("from-a-file", "k" * 32, admin)
    assert (api.host, api.port, api.session_lifetime, api.on_delete) == (
        "0.0.0.0", 18090, 900.0, "keep_seeding"
    )  # fmt: skip
    shown = repr(api)
    assert "from-a-file" not in shown and "k" * 32 not in shown and admin not in shown


@pytest.mark.parametrize(
    ("api", "error"),
    [
        (
            {"enabled": True},
            "api: set username and password (the *arr apps' login), or api_key, to enable it",
        ),
        ({"username": "arr"}, "api.password: required with api.username"),
        ({"password": "secret-pw"}, "api.username: required with api.password"),
        ({"username": "arr", "password": "short"}, "api.password: must be at least 6 characters"),
        ({"api_key": "tooshort"}, "api.api_key: must be at least 16 characters"),
        (
            {"host": "localhost"},
            "api.host: must be an IP address such as 127.0.0.1, 192.168.1.10 or 0.0.0.0, got 'localhost'",
        ),
        ({"port": 70000}, "api.port: value must be at most 65535"),
        ({"on_delete": "purge"}, "api.on_delete: value must be one of ['keep_seeding', 'remove']"),
        (
            {"session_lifetime": "soon"},
            "api.session_lifetime: expected a duration like 30s, 15m, 6h or 7d, got 'soon'",
        ),
        (
            {"password_file": "/nope/pw", "username": "arr"},
            "api.password_file: cannot read /nope/pw: No such file or directory",
        ),
        ({"bogus": 1}, "api.bogus: extra keys not allowed"),
    ],
)
def test_mistakes_name_their_key(raw: dict[str, Any], api: dict[str, Any], error: str) -> None:
    raw["api"] = api
    assert error in errors_of(raw)


def test_a_category_lands_where_the_rule_naming_it_sends_it(raw: dict[str, Any]) -> None:
    routing = parse_config(raw).routing
    assert category_destination(routing, "tv") == "tv"
    assert category_destination(routing, "movies") == "movies"
    assert category_destination(routing, "tv-sonarr") == routing.default_destination == "default"
    assert category_destination(routing, None) == "default"


@pytest.mark.parametrize(
    ("api", "warned"),
    [
        ({"host": "0.0.0.0"}, True),
        ({"host": "::"}, True),
        ({"host": "0.0.0.0", "admin_key": "a" * 20}, False),
        ({"host": "127.0.0.1"}, False),
        ({"host": "::1"}, False),
    ],
)
def test_open_management_routes_beyond_loopback_are_warned_of(
    raw: dict[str, Any], api: dict[str, Any], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Built, not run: no port is opened."""
    raw["api"] = {"enabled": True, "port": 0, "username": "arr", "password": "s3cret-pw", **api}
    bridge = Bridge(parse_config(raw))
    bridge.store.close()
    said = [r.getMessage() for r in caplog.records if "without api.admin_key" in r.getMessage()]
    assert len(said) == int(warned), said
    if warned:
        assert said[0].startswith(f"API: listening on {api['host']} without api.admin_key")
        assert "s3cret-pw" not in caplog.text
