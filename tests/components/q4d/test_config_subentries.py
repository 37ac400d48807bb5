"""Config subentries: the bridge's seedboxes, destinations and rules, added, edited and
removed from Home Assistant, and mirrored from the bridge's retained `config` topic.

The bridge is simulated at the MQTT boundary only (`config_bridge`), answering as the
spec of issue 20 says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, patch

import pytest
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.q4d.config_values import SECRET_KEYS
from custom_components.q4d.diagnostics import async_get_config_entry_diagnostics

from .common import FakeBridge, async_send
from .config_bridge import CONFIG_TOPIC, ConfigBridge, refusal
from .payloads import ITEM_1, ITEM_3, STATUS_TOPIC, status

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----"
HOST_KEY = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyForTheTests"
FINGERPRINT = "SHA256:Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy"
SSH_FORM = {
    "id": "sb3",
    "name": "Third seedbox",
    "host": "127.0.0.1",
    "port": 2222,
    "user": "me",
    "auth": "key",
    "private_key": KEY,
    "passphrase": "key passphrase 42",
    "remote_roots": ["/home/me/done", " "],
    "max_concurrent": 3,
    "engine": "sftp",
}
CLIENT_FORM = {
    "type": "qbittorrent",
    "url": "http://127.0.0.1:8080",
    "username": "admin",
    "password": "client secret 42",
}
SECRETS = (KEY, "key passphrase 42", "client secret 42", "ssh password 42")
YAML_SEEDBOX = {"id": "seedbox1", "host": "127.0.0.1", "user": "q4d", "key": "/etc/q4d/id"}
TV = {"path": "/media/tv", "arr_import": "sonarr", "extract": {"keep_archives": False}}


@pytest.fixture
async def config_bridge(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> AsyncGenerator[ConfigBridge]:
    """A bridge with a YAML seedbox and destination, a runtime destination and rule,
    its configuration published."""
    bridge = ConfigBridge(hass, fake_bridge)
    bridge.add("seedboxes", "seedbox1", YAML_SEEDBOX, "yaml")
    bridge.add("destinations", "movies", {"path": "/media/movies"}, "yaml")
    bridge.add("destinations", "tv", TV)
    bridge.add(
        "rules",
        "shows",
        {
            "id": "shows",
            "order": 10,
            "destination": "tv",
            "match": [{"field": "category", "is": "tv"}],
        },
    )
    bridge.publish()
    await hass.async_block_till_done()
    yield bridge


def subentries(entry: MockConfigEntry, kind: str | None = None) -> dict[str, ConfigSubentry]:
    """The entry's subentries by unique id."""
    return {
        str(s.unique_id): s
        for s in entry.subentries.values()
        if kind is None or s.subentry_type == kind
    }


def no_secrets(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """No secret in any subentry."""
    stored = json.dumps([s.as_dict() for s in entry.subentries.values()])
    for secret in SECRETS:
        assert secret not in stored
    for sub in entry.subentries.values():
        assert not SECRET_KEYS & set(sub.data["value"])


STRINGS = json.loads(
    (Path(__file__).parents[3] / "custom_components/q4d/strings.json").read_text()
)["config_subentries"]


def translated(result: Any) -> Any:
    """Every label, error and abort reason a flow result shows is in strings.json."""
    strings = STRINGS[result["handler"][1]]
    if result["type"] is FlowResultType.FORM:
        step_strings = strings["step"][result["step_id"]]
        assert step_strings["title"]
        schema = result["data_schema"].schema if result["data_schema"] else {}
        assert {str(key) for key in schema} <= set(step_strings.get("data", {}))
        assert set((result["errors"] or {}).values()) <= set(strings["error"])
    elif result["type"] is FlowResultType.ABORT:
        assert result["reason"] in strings["abort"]
    return result


async def start(hass: HomeAssistant, entry: MockConfigEntry, kind: str) -> dict[str, Any]:
    """A new subentry flow."""
    return translated(
        await hass.config_entries.subentries.async_init(
            (entry.entry_id, kind), context={"source": SOURCE_USER}
        )
    )


async def edit(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> dict[str, Any]:
    """A reconfigure flow of the subentry with that unique id."""
    sub = subentries(entry)[key]
    return translated(
        await hass.config_entries.subentries.async_init(
            (entry.entry_id, sub.subentry_type),
            context={"source": SOURCE_RECONFIGURE, "subentry_id": sub.subentry_id},
        )
    )


async def step(
    hass: HomeAssistant, result: dict[str, Any], user_input: dict[str, Any] | None
) -> Any:
    """Submit a form."""
    return translated(
        await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
    )


# --- the retained configuration ------------------------------------------------------------


async def test_sync_from_config_topic(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Every bridge entry is a subentry; YAML ones read-only; changes follow; none is
    told to the bridge as a removal."""
    entry = init_integration
    subs = subentries(entry)
    assert set(subs) == {"seedbox:seedbox1", "destination:movies", "destination:tv", "rule:shows"}
    assert subs["seedbox:seedbox1"].data == {
        "id": "seedbox1",
        "read_only": True,
        "value": YAML_SEEDBOX,
    }
    assert subs["seedbox:seedbox1"].title == "seedbox1 (YAML)"
    assert subs["destination:tv"].title == "tv (/media/tv)"
    assert subs["destination:tv"].data["read_only"] is False
    assert subs["rule:shows"].title == "#10 shows"
    assert subs["rule:shows"].data["value"]["order"] == 10
    # another Home Assistant adds a seedbox (secrets redacted), removes the rule
    config_bridge.add(
        "seedboxes", "sb2", {"id": "sb2", "name": "Two", "host": "127.0.0.1", "user": "x",
                             "password": "***", "has_password": True, "password_file": "/s/p"},
    )  # fmt: skip
    del config_bridge.sections["rules"]["shows"]
    config_bridge.add("destinations", "tv", {"path": "/media/series"})
    config_bridge.revision += 1
    config_bridge.publish()
    await hass.async_block_till_done()
    subs = subentries(entry)
    assert set(subs) == {"seedbox:seedbox1", "seedbox:sb2", "destination:movies", "destination:tv"}
    assert subs["seedbox:sb2"].data["value"] == {
        "id": "sb2", "name": "Two", "host": "127.0.0.1", "user": "x", "password_file": "/s/p"
    }  # fmt: skip
    assert subs["seedbox:sb2"].title == "Two"
    assert subs["destination:tv"].title == "tv (/media/series)"
    assert config_bridge.commands("config_remove") == []


@pytest.mark.parametrize(
    "payload",
    ["", "not json", '{"revision": "1", "sections": {}}', '{"revision": 1, "sections": {"rules": {}}}',
     '{"revision": 1, "sections": {"rules": [{"value": {}}]}}',
     '{"revision": 1, "sections": {"rules": [{"id": "r", "value": 3}]}}',
     '{"revision": 1, "sections": {"dispatch": {"id": "dispatch", "value": {}}}}',
     '{"revision": 1, "sections": {"dispatch": [{"id": "dispatch", "value": []}]}}'],
)  # fmt: skip
async def test_sync_ignores_invalid(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    payload: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A configuration that cannot be read changes nothing (and is logged)."""
    before = subentries(init_integration)
    await async_send(hass, CONFIG_TOPIC, payload)
    assert subentries(init_integration) == before
    assert bool(payload) == ("Ignoring invalid configuration from bridge" in caplog.text)


async def test_destination_as_path(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A destination published as its folder alone; a YAML rule without order."""
    body = {
        "revision": 3,
        "sections": {
            "destinations": [{"id": "music", "source": "yaml", "value": "/media/music"}],
            "rules": [{"id": "rule-0", "source": "yaml", "value": {"destination": "music"}}],
        },
    }
    await async_send(hass, CONFIG_TOPIC, json.dumps(body))
    subs = subentries(init_integration)
    assert subs["destination:music"].data["value"] == {"path": "/media/music"}
    assert subs["rule:rule-0"].title == "rule-0 (YAML)"


async def test_stale_config_and_restart(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A configuration older than a change the bridge confirmed is not applied, until
    the bridge restarts (it may count anew)."""
    entry = init_integration
    result = await start(hass, entry, "destination")
    config_bridge.publish_first = False
    with patch.object(ConfigBridge, "publish"):
        result = await step(hass, result, {"name": "music", "path": "/media/music"})
        await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    stale = config_bridge.body()
    del stale["sections"]["destinations"][-1]
    stale["revision"] = 1
    await async_send(hass, CONFIG_TOPIC, json.dumps(stale))
    assert "destination:music" in subentries(entry)
    # the bridge's newer configuration is not in: the subentry fills the form in
    result = await edit(hass, entry, "destination:music")
    schema = result["data_schema"].schema
    assert {str(k): k.description["suggested_value"] for k in schema if k.description}["path"] == (
        "/media/music"
    )
    await async_send(hass, STATUS_TOPIC, status("offline"))
    await async_send(hass, STATUS_TOPIC, status())
    assert "destination:music" not in subentries(entry)


# --- seedboxes -----------------------------------------------------------------------------


async def test_seedbox_flow(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SSH tested, host key shown and confirmed, client tested, seedbox saved on the
    bridge; no secret in the subentry, the integration's log or the diagnostics."""
    caplog.set_level(logging.DEBUG)
    entry = init_integration
    result = await start(hass, entry, "seedbox")
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "ssh"
    config_bridge.tests = [
        refusal("host_key_unknown", "unknown host key", fingerprint=FINGERPRINT, host_key=HOST_KEY)
    ]
    result = await step(hass, result, SSH_FORM)
    assert result["step_id"] == "host_key"
    assert result["description_placeholders"]["fingerprint"] == FINGERPRINT
    assert result["description_placeholders"]["port"] == "2222"
    result = await step(hass, result, {})
    assert result["step_id"] == "client"
    result = await step(hass, result, CLIENT_FORM)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Third seedbox"

    tests = config_bridge.commands("config_test")
    ssh = {
        "id": "sb3", "name": "Third seedbox", "host": "127.0.0.1", "port": 2222, "user": "me",
        "private_key": KEY + "\n", "passphrase": "key passphrase 42",
        "remote_roots": ["/home/me/done"], "max_concurrent": 3, "engine": "sftp",
    }  # fmt: skip
    client = {"type": "qbittorrent", "url": "http://127.0.0.1:8080", "username": "admin",
              "password": "client secret 42"}  # fmt: skip
    assert tests == [
        {"kind": "ssh", "value": ssh},
        {"kind": "ssh", "value": {**ssh, "host_key": HOST_KEY}},
        {"kind": "client", "value": client},
    ]
    assert config_bridge.commands("config_set") == [
        {"section": "seedboxes", "id": "sb3",
         "value": {**ssh, "client": client, "host_key": HOST_KEY}}
    ]  # fmt: skip
    sub = subentries(entry)["seedbox:sb3"]
    assert sub.data["read_only"] is False
    assert sub.data["value"]["key"].startswith("/data/q4d/secrets/")  # the bridge's view
    assert sub.data["value"]["known_hosts"] == "/data/q4d/known_hosts/sb3"
    no_secrets(hass, entry)
    diagnostics = json.dumps(await async_get_config_entry_diagnostics(hass, entry))
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("custom_components")]
    for secret in SECRETS:
        assert secret not in diagnostics
        assert not [line for line in ours if secret in line]


async def test_seedbox_password_without_client(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A password login, a pinned key already known, no client: no client test; the
    configuration published before the answer does not make a second subentry."""
    config_bridge.publish_first = True
    result = await start(hass, init_integration, "seedbox")
    form = {**SSH_FORM, "auth": "password", "password": "ssh password 42", "name": ""}
    result = await step(hass, result, form)
    result = await step(hass, result, {"type": "none"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "sb3"
    assert [t["kind"] for t in config_bridge.commands("config_test")] == ["ssh"]
    value = config_bridge.commands("config_set")[0]["value"]
    assert value["password"] == "ssh password 42"
    assert not {"private_key", "passphrase", "client", "host_key", "name"} & set(value)
    assert len(subentries(init_integration, "seedbox")) == 2
    no_secrets(hass, init_integration)


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        ({"id": "Bad Id"}, {"id": "invalid_id"}),
        ({"id": "seedbox1"}, {"id": "already_configured"}),
        ({"private_key": ""}, {"private_key": "secret_required"}),
        ({"auth": "password"}, {"password": "secret_required"}),
    ],
)
async def test_seedbox_form_errors(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    form: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """Mistakes found before asking the bridge."""
    result = await start(hass, init_integration, "seedbox")
    result = await step(hass, result, {**SSH_FORM, **form})
    assert result["step_id"] == "ssh"
    assert result["errors"] == errors
    assert config_bridge.commands("config_test") == []


@pytest.mark.parametrize(
    ("answer", "errors", "placeholders"),
    [
        (refusal("host_key_mismatch", "changed", fingerprint=FINGERPRINT, host_key=HOST_KEY),
         {"base": "host_key_mismatch"}, {"fingerprint": FINGERPRINT}),
        (refusal("auth_failed", "denied"), {"base": "auth_failed"}, {}),
        (refusal("unreachable", "refused"), {"base": "unreachable"}, {"message": "refused"}),
        (refusal("timeout", "20 s"), {"base": "timeout"}, {"message": "20 s"}),
        (refusal("root_missing", "no", root="/home/me/done"), {"remote_roots": "root_missing"},
         {"root": "/home/me/done"}),
        (refusal("root_unreadable", "no", root="/x"), {"remote_roots": "root_unreadable"},
         {"root": "/x"}),
        (refusal("host_key_unknown", "no key offered"), {"base": "unknown"}, {}),
        (refusal("invalid", "bad", errors=["seedboxes[0].port: too big"], fields={"port": "too big"}),
         {"base": "invalid", "port": "invalid_field"}, {"message": "seedboxes[0].port: too big"}),
        # the bridge names a key inside a field: the field shows it
        (refusal("invalid", "bad", fields={"remote_roots[0]": "expected an absolute path"}),
         {"base": "invalid", "remote_roots": "invalid_field"}, {"message": "bad"}),
        ({"ok": False, "code": "weird", "message": "flat"}, {"base": "unknown"},
         {"message": "flat"}),
    ],
)  # fmt: skip
async def test_seedbox_ssh_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, Any],
    errors: dict[str, str],
    placeholders: dict[str, str],
) -> None:
    """Each SSH test failure is a translated form error; fixing and retrying goes on."""
    config_bridge.tests = [answer]
    result = await start(hass, init_integration, "seedbox")
    result = await step(hass, result, SSH_FORM)
    assert result["step_id"] == "ssh"
    assert result["errors"] == errors
    assert placeholders.items() <= result["description_placeholders"].items()
    # the key was not kept in the form; entered again, the test passes
    result = await step(hass, result, SSH_FORM)
    assert result["step_id"] == "client"


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        (refusal("auth_failed", "403"), {"base": "client_auth_failed"}),
        (refusal("unreachable", "refused"), {"base": "client_unreachable"}),
        (refusal("timeout", "10 s"), {"base": "client_timeout"}),
        (refusal("unsupported", "not qBittorrent", type="qbittorrent"),
         {"base": "client_unsupported"}),
        (refusal("invalid", "bad", fields={"client.url": "must be http(s)", "password": "x"}),
         {"base": "invalid", "url": "invalid_field"}),
    ],
)  # fmt: skip
async def test_seedbox_client_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """Each client test failure is a translated form error on the client step."""
    result = await start(hass, init_integration, "seedbox")
    result = await step(hass, result, SSH_FORM)
    config_bridge.tests = [answer]
    result = await step(hass, result, CLIENT_FORM)
    assert result["step_id"] == "client"
    assert result["errors"] == errors
    result = await step(hass, result, {**CLIENT_FORM, "url": ""})
    assert result["errors"] == {"url": "url_required"}
    result = await step(hass, result, CLIENT_FORM)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_seedbox_host_key_kept_for_its_address(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A host key confirmed in the flow stays confirmed while the SSH form is fixed for
    the same host and port; another port shows its own key."""
    result = await start(hass, init_integration, "seedbox")
    config_bridge.tests = [
        refusal("host_key_unknown", "", fingerprint=FINGERPRINT, host_key=HOST_KEY),
        refusal("root_missing", "no", root="/home/me/done"),
    ]
    result = await step(hass, result, SSH_FORM)
    result = await step(hass, result, {})
    assert result["errors"] == {"remote_roots": "root_missing"}
    result = await step(hass, result, {**SSH_FORM, "remote_roots": ["/home/me/seeding"]})
    assert result["step_id"] == "client"
    assert config_bridge.commands("config_test")[-1]["value"]["host_key"] == HOST_KEY
    flow = await start(hass, init_integration, "seedbox")
    config_bridge.tests = [
        refusal("host_key_unknown", "", fingerprint=FINGERPRINT, host_key=HOST_KEY),
        refusal("root_missing", "no", root="/home/me/done"),
        refusal("host_key_unknown", "", fingerprint="SHA256:other", host_key="ssh-ed25519 B"),
    ]
    flow = await step(hass, flow, SSH_FORM)
    flow = await step(hass, flow, {})
    flow = await step(hass, flow, {**SSH_FORM, "port": 2223})
    assert flow["step_id"] == "host_key"
    assert flow["description_placeholders"]["fingerprint"] == "SHA256:other"
    assert "host_key" not in config_bridge.commands("config_test")[-1]["value"]


async def test_seedbox_client_through_ssh(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """An rTorrent socket reached over the seedbox's SSH link: the test gets the
    seedbox's settings (not saved yet), with the host key just confirmed."""
    result = await start(hass, init_integration, "seedbox")
    config_bridge.tests = [
        refusal("host_key_unknown", "", fingerprint=FINGERPRINT, host_key=HOST_KEY)
    ]
    result = await step(hass, result, SSH_FORM)
    result = await step(hass, result, {})
    url = "scgi+ssh:///home/me/.rtorrent.sock"
    result = await step(hass, result, {"type": "rtorrent", "url": url})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    ssh = config_bridge.commands("config_test")[1]["value"]
    assert ssh["host_key"] == HOST_KEY
    assert config_bridge.commands("config_test")[-1] == {
        "kind": "client", "value": {"type": "rtorrent", "url": url, "seedbox": ssh}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "step_id", "errors"),
    [
        (refusal("invalid", "bad", fields={"user": "bad user"}), "ssh",
         {"base": "invalid", "user": "invalid_field"}),
        (refusal("invalid", "bad", fields={"client.username": "x"}), "client",
         {"base": "invalid", "username": "invalid_field"}),
        (refusal("read_only", "seedboxes.sb3 is defined in the YAML file"), "client",
         {"base": "read_only"}),
    ],
)  # fmt: skip
async def test_seedbox_save_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, Any],
    step_id: str,
    errors: dict[str, str],
) -> None:
    """`config_set` refused: back to the form the mistake is on; nothing created."""
    config_bridge.sets = [answer]
    result = await start(hass, init_integration, "seedbox")
    result = await step(hass, result, SSH_FORM)
    result = await step(hass, result, CLIENT_FORM)
    assert result["step_id"] == step_id
    assert result["errors"] == errors
    await hass.async_block_till_done()
    assert "seedbox:sb3" not in subentries(init_integration)


async def test_seedbox_bridge_silent(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    fake_bridge: FakeBridge,
) -> None:
    """A bridge that does not answer: `cannot_connect`, and the user may retry."""
    result = await start(hass, init_integration, "seedbox")
    fake_bridge.silent = True
    with patch("custom_components.q4d.subentry_flow.TEST_TIMEOUT", 0.01):
        result = await step(hass, result, SSH_FORM)
    assert result["errors"] == {"base": "cannot_connect"}
    fake_bridge.silent = False
    result = await step(hass, result, SSH_FORM)
    assert result["step_id"] == "client"


async def test_flows_abort_when_bridge_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """No bridge to test and save with: the flows do not start."""
    await async_send(hass, STATUS_TOPIC, status("offline"))
    for kind in ("seedbox", "destination", "rule"):
        result = await start(hass, init_integration, kind)
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "cannot_connect"
    result = await edit(hass, init_integration, "destination:tv")
    assert result["reason"] == "cannot_connect"


async def test_flows_abort_when_not_loaded(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """An unloaded entry has no bridge to ask."""
    await hass.config_entries.async_unload(init_integration.entry_id)
    result = await start(hass, init_integration, "destination")
    assert result["reason"] == "cannot_connect"


async def test_seedbox_reconfigure(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Prefilled from the bridge; secrets left empty keep the bridge's files; keys the
    form does not show survive; the same host needs no new host key."""
    stored = {
        "id": "sb2", "name": "Two", "host": "127.0.0.1", "port": 2222, "user": "me",
        "key": "/data/q4d/secrets/seedboxes-sb2-private_key", "has_passphrase": True,
        "passphrase_file": "/data/q4d/secrets/seedboxes-sb2-passphrase",
        "known_hosts": "/data/q4d/known_hosts/sb2", "remote_roots": ["/home/me/done"],
        "reconcile": {"interval": "5m"},
        "client": {"type": "transmission", "url": "http://127.0.0.1:9091", "username": "u",
                   "password_file": "/data/q4d/secrets/seedboxes-sb2-client_password",
                   "poll_interval": "10s"},
    }  # fmt: skip
    config_bridge.add("seedboxes", "sb2", stored)
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await edit(hass, init_integration, "seedbox:sb2")
    assert result["step_id"] == "ssh"
    schema = result["data_schema"].schema
    assert "id" not in schema
    suggested = {str(k): k.description["suggested_value"] for k in schema if k.description}
    assert suggested["host"] == "127.0.0.1"
    assert suggested["auth"] == "key"
    form = {k: v for k, v in SSH_FORM.items() if k not in ("id", "private_key", "passphrase")}
    result = await step(hass, result, {**form, "max_concurrent": 4})
    assert result["step_id"] == "client"
    result = await step(hass, result, {"type": "transmission", "url": "http://127.0.0.1:9091"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    value = config_bridge.commands("config_set")[0]["value"]
    assert value["key"] == stored["key"]
    assert value["passphrase_file"] == stored["passphrase_file"]
    assert value["known_hosts"] == stored["known_hosts"]
    assert value["reconcile"] == {"interval": "5m"}
    assert value["client"] == {  # the username was emptied; the password kept
        "type": "transmission", "url": "http://127.0.0.1:9091",
        "password_file": stored["client"]["password_file"], "poll_interval": "10s",
    }  # fmt: skip
    assert not {"private_key", "passphrase", "has_passphrase", "host_key"} & set(value)
    assert subentries(init_integration)["seedbox:sb2"].data["value"]["max_concurrent"] == 4


async def test_seedbox_reconfigure_new_host(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Another host: its key is confirmed anew; switching to a password drops the key."""
    config_bridge.add(
        "seedboxes", "sb2", {"id": "sb2", "host": "127.0.0.1", "port": 22, "user": "me",
                             "key": "/k", "known_hosts": "/data/q4d/known_hosts/sb2"},
    )  # fmt: skip
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await edit(hass, init_integration, "seedbox:sb2")
    config_bridge.tests = [
        refusal("host_key_unknown", "", fingerprint=FINGERPRINT, host_key=HOST_KEY)
    ]
    form = {k: v for k, v in SSH_FORM.items() if k not in ("id", "private_key", "passphrase")}
    result = await step(hass, result, {**form, "auth": "password", "password": "ssh password 42"})
    assert result["step_id"] == "host_key"
    assert "known_hosts" not in config_bridge.commands("config_test")[0]["value"]
    result = await step(hass, result, {})
    result = await step(hass, result, {"type": "none"})
    assert result["reason"] == "reconfigure_successful"
    value = config_bridge.commands("config_set")[0]["value"]
    assert value["host_key"] == HOST_KEY
    assert "key" not in value


async def test_reconfigure_yaml_is_read_only(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """An entry of the bridge's YAML file is edited there."""
    for key in ("seedbox:seedbox1", "destination:movies"):
        result = await edit(hass, init_integration, key)
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "read_only_yaml"


# --- destinations --------------------------------------------------------------------------


async def test_destination_flow(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Tested, then saved; a numeric owner is a uid."""
    result = await start(hass, init_integration, "destination")
    assert result["step_id"] == "destination"
    form = {"name": "music", "path": " /media/music ", "owner": "1000", "group": "media",
            "extract": True}  # fmt: skip
    result = await step(hass, result, form)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "music (/media/music)"
    value = {"path": "/media/music", "owner": 1000, "group": "media", "extract": True}
    assert config_bridge.commands("config_test") == [{"kind": "destination", "value": value}]
    assert config_bridge.commands("config_set") == [
        {"section": "destinations", "id": "music", "value": value}
    ]
    assert subentries(init_integration)["destination:music"].data["value"] == value


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        (refusal("not_writable", "EACCES"), {"path": "not_writable"}),
        (refusal("missing", "ENOENT"), {"path": "missing"}),
        (refusal("chown_failed", "EPERM"), {"owner": "chown_failed"}),
        (refusal("invalid", "bad", fields={"path": "must be absolute"}),
         {"base": "invalid", "path": "invalid_field"}),
    ],
)  # fmt: skip
async def test_destination_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """Each destination test failure is a form error; the user fixes and retries."""
    config_bridge.tests = [answer]
    result = await start(hass, init_integration, "destination")
    result = await step(hass, result, {"name": "music", "path": "/media/music"})
    assert result["errors"] == errors
    assert config_bridge.commands("config_set") == []
    result = await step(hass, result, {"name": "music", "path": "/media/music"})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_destination_save_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """`config_set` refused after a passing test."""
    config_bridge.sets = [refusal("invalid", "x", errors=["destinations.music.path: bad"])]
    result = await start(hass, init_integration, "destination")
    result = await step(hass, result, {"name": "music", "path": "/media/music"})
    assert result["errors"] == {"base": "invalid"}
    assert result["description_placeholders"]["message"] == "destinations.music.path: bad"


async def test_destination_reconfigure(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Keys the form does not show (arr_import) and the extract settings survive."""
    result = await edit(hass, init_integration, "destination:tv")
    assert "name" not in result["data_schema"].schema
    result = await step(hass, result, {"path": "/media/series", "extract": True})
    assert result["reason"] == "reconfigure_successful"
    assert config_bridge.commands("config_set")[0]["value"] == {
        "path": "/media/series", "arr_import": "sonarr", "extract": {"keep_archives": False}
    }  # fmt: skip
    result = await edit(hass, init_integration, "destination:tv")
    result = await step(hass, result, {"path": "/media/series", "extract": False})
    assert config_bridge.commands("config_set")[1]["value"] == {
        "path": "/media/series", "arr_import": "sonarr"
    }  # fmt: skip
    await hass.async_block_till_done()
    assert subentries(init_integration)["destination:tv"].title == "tv (/media/series)"


# --- rules ---------------------------------------------------------------------------------


async def test_rule_flow(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A rule with two conditions, after the last one by order; condition mistakes are
    caught in the form."""
    result = await start(hass, init_integration, "rule")
    assert result["step_id"] == "rule"
    schema = result["data_schema"].schema
    assert {str(k): k.description["suggested_value"] for k in schema if k.description} == {
        "order": 20, "ignore": False
    }  # fmt: skip
    result = await step(hass, result, {"id": "films", "order": 5})
    assert result["errors"] == {"destination": "destination_required"}
    result = await step(
        hass, result, {"id": "films", "order": 5, "destination": "movies", "add_condition": True}
    )
    assert result["step_id"] == "condition"
    assert result["description_placeholders"]["number"] == "1"
    for form, errors in (
        ({"field": "size", "operator": "is", "value": "1"}, {"operator": "operator_not_for_field"}),
        ({"field": "size", "operator": "gt", "value": "5G"}, {"value": "invalid_size"}),
        ({"field": "name", "operator": "regex", "value": "("}, {"value": "invalid_regex"}),
    ):
        result = await step(hass, result, form)
        assert result["errors"] == errors
    result = await step(
        hass,
        result,
        {"field": "size", "operator": "gt", "value": "2000000000", "add_another": True},
    )
    assert result["description_placeholders"]["number"] == "2"
    result = await step(hass, result, {"field": "name", "operator": "regex", "value": "(?i)1080p"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "#5 films"
    assert config_bridge.commands("config_set") == [
        {"section": "rules", "id": "films", "value": {
            "id": "films", "order": 5, "destination": "movies",
            "match": [{"field": "size", "gt": 2000000000}, {"field": "name", "regex": "(?i)1080p"}],
        }}
    ]  # fmt: skip
    assert subentries(init_integration)["rule:films"].title == "#5 films"


async def test_rule_ignore_without_conditions(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A rule that leaves everything on the seedbox; a taken id is refused."""
    result = await start(hass, init_integration, "rule")
    result = await step(hass, result, {"id": "shows", "order": 1, "ignore": True})
    assert result["errors"] == {"id": "already_configured"}
    result = await step(
        hass, result, {"id": "all", "order": 1, "ignore": True, "add_condition": False}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert config_bridge.commands("config_set")[0]["value"] == {
        "id": "all", "order": 1, "match": [], "ignore": True
    }  # fmt: skip


async def test_rule_reconfigure(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Existing conditions one by one (kept, changed or dropped), then new ones; moved
    by its order; a refusal goes back to the rule with the conditions as entered."""
    config_bridge.add(
        "rules", "shows",
        {"id": "shows", "order": 10, "destination": "tv", "ignore": False, "subdir": "{category}",
         "match": [{"field": "category", "is": "tv"}, {"field": "tags", "op": "not", "value": "x"},
                   {"field": "nope", "is": "x"}]},
    )  # fmt: skip
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await edit(hass, init_integration, "rule:shows")
    assert "add_condition" not in result["data_schema"].schema
    result = await step(hass, result, {"order": 30, "destination": "tv"})
    assert result["step_id"] == "condition"
    assert "add_another" not in result["data_schema"].schema
    result = await step(hass, result, {"field": "category", "operator": "is", "value": "series"})
    assert "add_another" in result["data_schema"].schema
    config_bridge.sets = [refusal("invalid", "x", fields={"destination": "not a destination"})]
    result = await step(
        hass, result, {"field": "tags", "operator": "not", "value": "x", "keep": False}
    )
    assert result["step_id"] == "rule"
    assert result["errors"] == {"base": "invalid", "destination": "invalid_field"}
    result = await step(hass, result, {"order": 30, "destination": "tv"})
    result = await step(hass, result, {"field": "category", "operator": "is", "value": "series",
                                       "add_another": True})  # fmt: skip
    result = await step(hass, result, {"field": "tracker", "operator": "contains", "value": "t"})
    await hass.async_block_till_done()
    assert result["reason"] == "reconfigure_successful"
    assert config_bridge.commands("config_set")[-1]["value"] == {
        "id": "shows", "order": 30, "destination": "tv", "subdir": "{category}",
        "match": [{"field": "category", "is": "series"}, {"field": "tracker", "contains": "t"}],
    }  # fmt: skip
    assert subentries(init_integration)["rule:shows"].title == "#30 shows"


async def test_rule_reconfigure_no_conditions(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A rule without conditions stays without, unless some are added."""
    config_bridge.add("rules", "shows", {"id": "shows", "order": 10, "ignore": True})
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await edit(hass, init_integration, "rule:shows")
    result = await step(hass, result, {"order": 10, "ignore": True})
    assert result["reason"] == "reconfigure_successful"
    assert config_bridge.commands("config_set")[0]["value"]["match"] == []


# --- removal -------------------------------------------------------------------------------


async def remove(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> None:
    """Remove a subentry as the frontend does; the bridge is told in the background."""
    hass.config_entries.async_remove_subentry(entry, subentries(entry)[key].subentry_id)
    await hass.async_block_till_done(wait_background_tasks=True)


@pytest.fixture
def notify() -> Any:
    """Persistent notifications created."""
    with patch("homeassistant.components.persistent_notification.async_create") as create:
        yield create


async def test_remove(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    notify: MagicMock,
) -> None:
    """A removed runtime entry is removed from the bridge, and stays removed."""
    await remove(hass, init_integration, "rule:shows")
    assert config_bridge.commands("config_remove") == [
        {"section": "rules", "id": "shows", "confirm": False}
    ]
    assert "rule:shows" not in subentries(init_integration)
    assert "shows" not in config_bridge.sections["rules"]
    notify.assert_not_called()


async def test_remove_gone_from_bridge(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    notify: MagicMock,
) -> None:
    """The bridge no longer had it (`not_found`): removed here too."""
    bridge = ConfigBridge(hass, fake_bridge)  # its configuration not published yet
    sub = ConfigSubentry(
        data={"id": "shows", "read_only": False, "value": {}},  # type: ignore[arg-type]
        subentry_type="rule",
        title="shows",
        unique_id="rule:shows",
    )
    hass.config_entries.async_add_subentry(init_integration, sub)
    await hass.async_block_till_done()
    await remove(hass, init_integration, "rule:shows")
    assert bridge.commands("config_remove") == [
        {"section": "rules", "id": "shows", "confirm": False}
    ]
    assert "rule:shows" not in subentries(init_integration)
    notify.assert_not_called()


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (refusal("in_use", "rule shows sends payloads there"), "rule shows sends payloads there"),
        (refusal("busy", "try later"), "(busy): try later"),
        (None, "did not answer"),
    ],
)
async def test_remove_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    fake_bridge: FakeBridge,
    notify: MagicMock,
    answer: dict[str, Any] | None,
    text: str,
) -> None:
    """Refused (or not answered): put back, and a notification says why."""
    if answer is None:
        await async_send(hass, STATUS_TOPIC, status("offline"))
    else:
        config_bridge.removes = [answer]
    await remove(hass, init_integration, "destination:tv")
    sub = subentries(init_integration)["destination:tv"]
    assert sub.data["value"] == TV
    notify.assert_called_once()
    assert text in notify.call_args.args[1]
    assert (
        notify.call_args.kwargs["title"] == "tv (/media/tv) was not removed from Home media bridge"
    )


async def test_remove_yaml(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    notify: MagicMock,
) -> None:
    """A YAML entry is not removed from the bridge: put back with a note."""
    await remove(hass, init_integration, "seedbox:seedbox1")
    assert config_bridge.commands("config_remove") == []
    assert subentries(init_integration)["seedbox:seedbox1"].data["read_only"] is True
    assert "YAML configuration file" in notify.call_args.args[1]


async def test_remove_yaml_before_any_config(
    hass: HomeAssistant, init_integration: MockConfigEntry, notify: MagicMock
) -> None:
    """Put back even when no configuration has arrived since Home Assistant started."""
    sub = ConfigSubentry(
        data={"id": "seedbox1", "read_only": True, "value": {}},  # type: ignore[arg-type]
        subentry_type="seedbox",
        title="seedbox1 (YAML)",
        unique_id="seedbox:seedbox1",
    )
    hass.config_entries.async_add_subentry(init_integration, sub)
    await hass.async_block_till_done()
    await remove(hass, init_integration, "seedbox:seedbox1")
    assert "seedbox:seedbox1" in subentries(init_integration)
    notify.assert_called_once()


async def test_remove_seedbox_confirm(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    notify: MagicMock,
) -> None:
    """A seedbox with unfinished transfers: put back and explained; removed again
    within the window, it is removed with `confirm`."""
    config_bridge.add("seedboxes", "sb2", {"id": "sb2", "host": "127.0.0.1", "user": "u"})
    config_bridge.publish()
    await hass.async_block_till_done()
    config_bridge.removes = [refusal("confirm_required", "2 items", items=[ITEM_1, "gone", 3])]
    await remove(hass, init_integration, "seedbox:sb2")
    assert "seedbox:sb2" in subentries(init_integration)
    text = notify.call_args.args[1]
    assert "Show.S01E01.mkv, gone" in text
    assert "within 10 minutes" in text
    with patch("homeassistant.components.persistent_notification.async_dismiss") as dismiss:
        await remove(hass, init_integration, "seedbox:sb2")
    assert config_bridge.commands("config_remove") == [
        {"section": "seedboxes", "id": "sb2", "confirm": False},
        {"section": "seedboxes", "id": "sb2", "confirm": True},
    ]
    assert "seedbox:sb2" not in subentries(init_integration)
    dismiss.assert_called_once()


async def test_remove_many_items_named(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    notify: MagicMock,
) -> None:
    """A long list of unfinished transfers is cut short."""
    config_bridge.removes = [refusal("confirm_required", "", items=[ITEM_3] * 25)]
    await remove(hass, init_integration, "destination:tv")
    assert notify.call_args.args[1].count("Broken.iso") == 20
    assert "(+5)" in notify.call_args.args[1]


async def test_unload_stops_sync(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Unloaded, the entry neither follows the bridge nor tells it of removals."""
    await hass.config_entries.async_unload(init_integration.entry_id)
    config_bridge.add("destinations", "music", {"path": "/media/music"})
    config_bridge.publish()
    await hass.async_block_till_done()
    assert "destination:music" not in subentries(init_integration)
    await remove(hass, init_integration, "rule:shows")
    assert config_bridge.commands("config_remove") == []


async def test_removal_during_unload(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    fake_bridge: FakeBridge,
) -> None:
    """An answer that arrives after the entry unloaded changes nothing any more."""
    sync = init_integration.runtime_data.config_sync

    def unload_then_refuse(command: dict[str, Any]) -> dict[str, Any]:
        sync._stopped = True  # the unload lands while the command waits
        return refusal("in_use", "x")

    fake_bridge.answers["config_remove"] = unload_then_refuse
    await remove(hass, init_integration, "destination:tv")
    assert "destination:tv" not in subentries(init_integration)


async def test_steps_without_input(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A step asked again without input shows its form again."""
    config_bridge.add("rules", "shows", {"id": "shows", "order": 7, "match": "bad"})
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await edit(hass, init_integration, "rule:shows")
    schema = result["data_schema"].schema
    assert {str(k): k.description["suggested_value"] for k in schema if k.description} == {
        "order": 7,
        "ignore": False,
    }
    result = await step(hass, result, {"order": 7, "ignore": True, "add_condition": True})
    assert (await step(hass, result, None))["step_id"] == "condition"
    result = await start(hass, init_integration, "seedbox")
    result = await step(hass, result, SSH_FORM)
    assert (await step(hass, result, None))["step_id"] == "client"


async def test_flows_abort_without_config(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A bridge that publishes no configuration cannot be configured from here."""
    result = await start(hass, init_integration, "rule")
    assert result["reason"] == "unsupported"


async def test_flow_closed_after_unload(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A flow left open while the entry unloads ends without touching the subentries."""
    config_bridge.tests = [refusal("missing", "ENOENT")]
    result = await start(hass, init_integration, "destination")
    result = await step(hass, result, {"name": "music", "path": "/media/music"})
    before = subentries(init_integration)
    await hass.config_entries.async_unload(init_integration.entry_id)
    hass.config_entries.subentries.async_abort(result["flow_id"])
    await hass.async_block_till_done()
    assert subentries(init_integration) == before


async def test_seedbox_reconfigure_new_host_key(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Same host, a host key that really changed: asked for, the pinned one is dropped
    and the new one confirmed."""
    stored = {"id": "sb2", "host": "127.0.0.1", "port": 2222, "user": "me", "key": "/k",
              "known_hosts": "/data/q4d/known_hosts/sb2"}  # fmt: skip
    config_bridge.add("seedboxes", "sb2", stored)
    config_bridge.publish()
    await hass.async_block_till_done()
    form = {k: v for k, v in SSH_FORM.items() if k not in ("id", "private_key", "passphrase")}
    result = await edit(hass, init_integration, "seedbox:sb2")
    config_bridge.tests = [refusal("host_key_mismatch", "changed")]
    result = await step(hass, result, form)
    assert result["errors"] == {"base": "host_key_mismatch"}
    assert config_bridge.commands("config_test")[0]["value"]["known_hosts"] == stored["known_hosts"]
    config_bridge.tests = [
        refusal("host_key_unknown", "", fingerprint=FINGERPRINT, host_key=HOST_KEY)
    ]
    result = await step(hass, result, {**form, "new_host_key": True})
    assert result["step_id"] == "host_key"
    assert "known_hosts" not in config_bridge.commands("config_test")[1]["value"]


async def test_seedbox_client_type_changed(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Another kind of client: the old one's settings and password do not carry over;
    a host key pinned again replaces the file that pinned the old one."""
    stored = {"id": "sb2", "host": "127.0.0.1", "port": 2222, "user": "me", "key": "/k",
              "known_hosts": "/data/q4d/known_hosts/sb2",
              "client": {"type": "deluge", "url": "http://127.0.0.1:8112", "poll_interval": "9s",
                         "password_file": "/data/q4d/secrets/seedboxes-sb2-client_password"}}  # fmt: skip
    config_bridge.add("seedboxes", "sb2", stored)
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await edit(hass, init_integration, "seedbox:sb2")
    form = {k: v for k, v in SSH_FORM.items() if k not in ("id", "private_key", "passphrase")}
    # the bridge lost the pinned key's file: the key is shown again
    config_bridge.tests = [
        refusal("host_key_unknown", "", fingerprint=FINGERPRINT, host_key=HOST_KEY)
    ]
    result = await step(hass, result, form)
    result = await step(hass, result, {})
    result = await step(hass, result, {"type": "transmission", "url": "http://127.0.0.1:9091"})
    assert result["reason"] == "reconfigure_successful"
    tests = config_bridge.commands("config_test")
    assert tests[1]["value"]["host_key"] == HOST_KEY
    assert "known_hosts" not in tests[1]["value"]
    assert tests[2]["value"] == {"type": "transmission", "url": "http://127.0.0.1:9091"}
    value = config_bridge.commands("config_set")[0]["value"]
    assert value["client"] == {
        "type": "transmission",
        "url": "http://127.0.0.1:9091",
        "password": None,
    }
    assert value["host_key"] == HOST_KEY
    assert "known_hosts" not in value


async def test_stored_but_not_applied(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    notify: MagicMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`apply_failed`: stored on the bridge, applied when it restarts; saved (or
    removed) here too."""
    config_bridge.sets = [
        refusal("apply_failed", "stored as revision 9 but not applied", revision=9)
    ]
    result = await start(hass, init_integration, "destination")
    result = await step(hass, result, {"name": "music", "path": "/media/music"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert "could not apply it now" in caplog.text
    config_bridge.removes = [refusal("apply_failed", "stored as revision 10", revision=10)]
    await remove(hass, init_integration, "rule:shows")
    assert "rule:shows" not in subentries(init_integration)
    notify.assert_not_called()
