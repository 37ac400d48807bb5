"""The home torrent client subentry flow against the stand-in bridge (config_bridge.py):
a client tested (`config_test` kind home_client) and saved (`config_set` section
home_clients) with its password, which no subentry holds; the client's refusals as
form errors; an edit that keeps the bridge's password unless one is typed; clients the
bridge publishes become subentries, those of its YAML file read-only; removal, and the
bridge refusing it for a client a hand-off still names."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock, patch

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from . import test_config_subentries
from .common import FakeBridge, async_send
from .config_bridge import ConfigBridge, refusal
from .payloads import STATUS_TOPIC, status
from .test_config_subentries import edit, no_secrets, remove, start, step, subentries

config_bridge = test_config_subentries.config_bridge  # the fixtures
notify = test_config_subentries.notify
PASSWORD = "home client secret 42"
PASSWORD_FILE = "/data/q4d/secrets/home_clients-seeder-password"
FORM = {
    "name": "seeder",
    "type": "qbittorrent",
    "url": " http://127.0.0.1:8080 ",
    "username": "admin",
    "password": PASSWORD,
    "verify_tls": True,
}
VALUE = {
    "type": "qbittorrent",
    "url": "http://127.0.0.1:8080",
    "username": "admin",
    "verify_tls": True,
    "password": PASSWORD,
}


def no_password(entry: MockConfigEntry) -> None:
    """The password is in no subentry, nor is any other secret."""
    for sub in entry.subentries.values():
        assert PASSWORD not in str(sub.as_dict())


async def test_home_client_flow(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Tested with the password, then saved; the subentry holds the password's file."""
    result = await start(hass, init_integration, "home_client")
    assert result["step_id"] == "home_client"
    assert {str(k) for k in result["data_schema"].schema} == {
        "name", "type", "url", "username", "password", "verify_tls",
    }  # fmt: skip
    result = await step(hass, result, FORM)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "seeder (qBittorrent)"
    assert config_bridge.commands("config_test") == [{"kind": "home_client", "value": VALUE}]
    assert config_bridge.commands("config_set") == [
        {"section": "home_clients", "id": "seeder", "value": VALUE}
    ]
    sub = subentries(init_integration, "home_client")["home_client:seeder"]
    assert sub.data["read_only"] is False
    # as the bridge published it: the password's file named, not the password
    assert sub.data["value"]["password_file"] == PASSWORD_FILE
    assert "password" not in sub.data["value"]
    no_password(init_integration)
    no_secrets(hass, init_integration)


async def test_home_client_without_login(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A Transmission without a login, its self-signed certificate not verified."""
    result = await start(hass, init_integration, "home_client")
    form = {"name": "tr", "type": "transmission", "url": "https://127.0.0.1:9091/transmission/rpc",
            "verify_tls": False}  # fmt: skip
    result = await step(hass, result, form)
    assert result["title"] == "tr (Transmission)"
    value = {"type": "transmission", "url": form["url"], "verify_tls": False}
    assert config_bridge.commands("config_test") == [{"kind": "home_client", "value": value}]
    assert config_bridge.commands("config_set")[0]["value"] == value


@pytest.mark.parametrize(
    ("answer", "errors", "message"),
    [
        (refusal("auth_failed", "login refused (HTTP 403)"), {"base": "auth_failed"},
         "login refused (HTTP 403)"),
        (refusal("unreachable", "connection refused"), {"base": "unreachable"},
         "connection refused"),
        (refusal("timeout", "no answer within 10 s"), {"base": "timeout"},
         "no answer within 10 s"),
        (refusal("unsupported", "not a qBittorrent WebUI"), {"base": "unsupported"},
         "not a qBittorrent WebUI"),
        (refusal("invalid", "bad", errors=["home_clients.seeder.url: must be an http(s) URL"],
                 fields={"url": "must be an http(s) URL"}),
         {"base": "invalid", "url": "invalid_field"},
         "home_clients.seeder.url: must be an http(s) URL"),
        (refusal("not_found", "odd"), {"base": "unknown"}, "odd"),
    ],
)  # fmt: skip
async def test_home_client_test_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, Any],
    errors: dict[str, str],
    message: str,
) -> None:
    """Each failed test is a translated form error, the password not shown back and
    nothing saved; fixed, it saves."""
    config_bridge.tests = [answer]
    result = await start(hass, init_integration, "home_client")
    result = await step(hass, result, FORM)
    assert result["step_id"] == "home_client"
    assert result["errors"] == errors
    assert result["description_placeholders"]["message"] == message
    assert config_bridge.commands("config_set") == []
    for key in result["data_schema"].schema:
        assert (key.description or {}).get("suggested_value") != PASSWORD
    result = await step(hass, result, FORM)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        (refusal("invalid", "bad", fields={"username": "expected str", "base": "odd"}),
         {"base": "invalid", "username": "invalid_field"}),
        (refusal("read_only", "home_clients.seeder is defined in the YAML file"),
         {"base": "read_only"}),
    ],
)  # fmt: skip
async def test_home_client_save_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """`config_set` refused after a passing test: the form again; nothing created."""
    config_bridge.sets = [answer]
    result = await start(hass, init_integration, "home_client")
    result = await step(hass, result, FORM)
    assert result["errors"] == errors
    await hass.async_block_till_done()
    assert "home_client:seeder" not in subentries(init_integration)


async def test_home_client_bridge_silent(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    fake_bridge: FakeBridge,
) -> None:
    """A bridge that does not answer the test: `cannot_connect`; retried, it saves."""
    result = await start(hass, init_integration, "home_client")
    fake_bridge.silent = True
    with patch("custom_components.q4d.subentry_flow.TEST_TIMEOUT", 0.01):
        result = await step(hass, result, FORM)
    assert result["errors"] == {"base": "cannot_connect"}
    fake_bridge.silent = False
    result = await step(hass, result, FORM)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("name", "errors"),
    [("Seeder", {"name": "invalid_id"}), ("home", {"name": "already_configured"})],
)
async def test_home_client_name_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    name: str,
    errors: dict[str, str],
) -> None:
    """A name that is no id, or one the bridge has, is refused before any test."""
    config_bridge.add("home_clients", "home", {"type": "qbittorrent", "url": "http://h:8080"})
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await start(hass, init_integration, "home_client")
    result = await step(hass, result, {**FORM, "name": name})
    assert result["errors"] == errors
    assert config_bridge.commands("config_test") == []


async def test_home_client_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """No bridge to test and save with: adding or editing does not start."""
    config_bridge.add("home_clients", "home", {"type": "qbittorrent", "url": "http://h:8080"})
    config_bridge.publish()
    await async_send(hass, STATUS_TOPIC, status("offline"))
    result = await start(hass, init_integration, "home_client")
    assert result["reason"] == "cannot_connect"
    result = await edit(hass, init_integration, "home_client:home")
    assert result["reason"] == "cannot_connect"


async def test_home_client_synced_and_reconfigured(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """The bridge's clients are subentries (its YAML ones read-only); an edit without
    a password names the bridge's password file, one with a password replaces it."""
    stored = {"type": "qbittorrent", "url": "http://h:8080", "username": "admin",
              "verify_tls": True, "recheck_timeout": 3600.0, "password_file": PASSWORD_FILE}  # fmt: skip
    config_bridge.add("home_clients", "seeder", {**stored, "password": "***", "has_password": True})
    config_bridge.add(
        "home_clients", "nas", {"type": "transmission", "url": "http://n:9091/transmission/rpc",
                                "password": "***", "has_password": True}, "yaml",
    )  # fmt: skip
    config_bridge.publish()
    await hass.async_block_till_done()
    subs = subentries(init_integration, "home_client")
    assert (subs["home_client:seeder"].title, subs["home_client:nas"].title) == (
        "seeder (qBittorrent)",
        "nas (Transmission) (YAML)",
    )
    assert subs["home_client:nas"].data == {
        "id": "nas",
        "read_only": True,
        "value": {"type": "transmission", "url": "http://n:9091/transmission/rpc"},
    }
    assert subs["home_client:seeder"].data["value"] == stored
    result = await edit(hass, init_integration, "home_client:nas")
    assert result["reason"] == "read_only_yaml"

    result = await edit(hass, init_integration, "home_client:seeder")
    assert "name" not in result["data_schema"].schema
    suggested = {
        str(k): k.description["suggested_value"]
        for k in result["data_schema"].schema
        if k.description and "suggested_value" in k.description
    }
    assert suggested == {"type": "qbittorrent", "url": "http://h:8080", "username": "admin",
                         "verify_tls": True}  # fmt: skip
    result = await step(
        hass, result, {"type": "qbittorrent", "url": "http://h:9090", "verify_tls": False}
    )
    assert result["reason"] == "reconfigure_successful"
    # the username cleared, the bridge's password file kept (tested with it too)
    kept = {**stored, "url": "http://h:9090", "verify_tls": False}
    del kept["username"]
    assert config_bridge.commands("config_test") == [{"kind": "home_client", "value": kept}]
    assert config_bridge.commands("config_set")[0] == {
        "section": "home_clients", "id": "seeder", "value": kept,
    }  # fmt: skip

    result = await edit(hass, init_integration, "home_client:seeder")
    result = await step(
        hass,
        result,
        {"type": "transmission", "url": "http://h:9091/transmission/rpc", "username": "me",
         "password": PASSWORD},
    )  # fmt: skip
    new = {"type": "transmission", "url": "http://h:9091/transmission/rpc", "username": "me",
           "verify_tls": True, "recheck_timeout": 3600.0, "password": PASSWORD}  # fmt: skip
    assert config_bridge.commands("config_test")[1]["value"] == new
    assert config_bridge.commands("config_set")[1]["value"] == new
    await hass.async_block_till_done()
    assert subentries(init_integration)["home_client:seeder"].title == "seeder (Transmission)"
    no_password(init_integration)
    no_secrets(hass, init_integration)


async def test_home_client_removed(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    notify: MagicMock,
) -> None:
    """Removed from the bridge; refused while a hand-off names it (put back, with the
    bridge's reason); a YAML one put back without asking the bridge."""
    config_bridge.add("home_clients", "seeder", {"type": "qbittorrent", "url": "http://h:8080"})
    config_bridge.add(
        "home_clients", "nas", {"type": "qbittorrent", "url": "http://n:8080"}, "yaml"
    )
    config_bridge.publish()
    await hass.async_block_till_done()
    config_bridge.removes = [
        refusal("in_use", "home client seeder is still used by destinations.tv",
                used_by=["destinations.tv"])
    ]  # fmt: skip
    await remove(hass, init_integration, "home_client:seeder")
    assert "home_client:seeder" in subentries(init_integration)
    notify.assert_called_once()
    assert "home client seeder is still used by destinations.tv" in notify.call_args.args[1]
    assert notify.call_args.kwargs["title"] == (
        "seeder (qBittorrent) was not removed from Home media bridge"
    )

    await remove(hass, init_integration, "home_client:seeder")
    assert (
        config_bridge.commands("config_remove")
        == [{"section": "home_clients", "id": "seeder", "confirm": False}] * 2
    )
    assert "home_client:seeder" not in subentries(init_integration)
    assert "seeder" not in config_bridge.sections["home_clients"]

    await remove(hass, init_integration, "home_client:nas")
    assert len(config_bridge.commands("config_remove")) == 2
    assert subentries(init_integration)["home_client:nas"].data["read_only"] is True
    assert "YAML configuration file" in notify.call_args.args[1]
