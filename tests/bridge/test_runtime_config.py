"""The runtime configuration layer's commands (config_get, config_set, config_remove)
through the command desk, on a real store and real secret files: valid and invalid
input (check-config's mistake table made in an entry set at runtime), read-only YAML
entries, secrets kept as 0600 files and never in answers or the store."""

from __future__ import annotations

import copy
import json
import random
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncssh
import pytest
import yaml
from q4d_bridge import cli
from q4d_bridge.config.loader import ConfigError, load_config
from q4d_bridge.config.model import Config
from q4d_bridge.config.runtime import field_errors, merge
from q4d_bridge.config.source import ConfigSource
from q4d_bridge.datadir import DataDirLock
from q4d_bridge.mqtt.commands import CommandDesk
from q4d_bridge.mqtt.config_commands import ConfigDesk
from q4d_bridge.persistence.store import Store

from tests.bridge.test_config import MISTAKES
from tests.bridge.test_legacy_env import SEED_DOCKER_RUN

PASSWORD = "pw-Secret-7f3a"
PASSPHRASE = "pp-Secret-91c2"
CLIENT_PASSWORD = "cl-Secret-4d8e"


def keypair(passphrase: str | None = None) -> tuple[str, str]:
    """A fresh private key's text (encrypted with passphrase) and its public line."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    text = key.export_private_key(passphrase=passphrase).decode()
    return text, key.export_public_key().decode().strip()


@dataclass
class Env:
    desk: ConfigDesk
    store: Store
    data: Path
    config: Config
    answers: list[bytes] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    applied: list[tuple[Config, bool]] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    commands: CommandDesk | None = None
    failing: bool = False

    async def apply(self, new: Config, *, confirm: bool) -> dict[str, Any]:
        if self.failing:
            raise RuntimeError("boom")
        self.applied.append((new, confirm))
        self.config = new
        return {"routing": True}

    async def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.commands is not None
        self.commands.handle(
            json.dumps({"id": f"r{len(self.answers)}", "op": op, "args": args}).encode()
        )
        await self.commands.settled()
        answer: dict[str, Any] = json.loads(self.answers[-1])
        return answer

    async def ok(self, op: str, **args: Any) -> Any:
        answer = await self.ask(op, **args)
        assert answer["ok"], answer
        return answer["result"]

    async def refused(self, op: str, code: str, **args: Any) -> dict[str, Any]:
        answer = await self.ask(op, **args)
        assert not answer["ok"] and answer["error"]["code"] == code, answer
        error: dict[str, Any] = answer["error"]
        return error

    def said(self) -> str:
        """Every answer and retained body so far."""
        return b"".join(self.answers).decode() + json.dumps(self.published)

    def stored(self) -> list[tuple[str, str, str]]:
        with self.store.transaction() as db:
            return [tuple(r) for r in db.execute("SELECT section, id, value FROM runtime_config")]

    def secret_files(self) -> list[Path]:
        return sorted(p for d in ("secrets", "known_hosts") for p in (self.data / d).glob("*"))


def make_env(raw: dict[str, Any], tmp_path: Path, items: Iterable[Any] = ()) -> Env:
    source = ConfigSource(copy.deepcopy(raw), tmp_path / "bridge.yaml")
    config = source.load()
    store = Store(config.data_dir / "q4d.sqlite3")
    env = Env(None, store, config.data_dir, config, items=list(items))  # type: ignore[arg-type]
    env.desk = ConfigDesk(
        store, source, apply=env.apply, current=lambda: env.config,
        unfinished=lambda: env.items, publish=env.published.append,
    )  # fmt: skip
    env.commands = CommandDesk(None, env.answers.append, config=env.desk)  # type: ignore[arg-type]
    return env


@pytest.fixture
def env(raw: dict[str, Any], tmp_path: Path) -> Env:
    raw["seedboxes"][0]["client"] = {
        "type": "qbittorrent", "url": "http://127.0.0.1:9", "password": CLIENT_PASSWORD,
    }  # fmt: skip
    return make_env(raw, tmp_path)


def seedbox(**extra: Any) -> dict[str, Any]:
    """A seedbox entry; without a host key, the first one seen is trusted."""
    login = {} if "host_key" in extra else {"trust_on_first_use": True}
    return {"host": "127.0.0.1", "port": 2222, "user": "me", "remote_roots": ["/srv"], **login,
            **extra}  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_get_lists_the_yaml_entries_read_only_and_redacted(env: Env) -> None:
    body = await env.ok("config_get")
    assert body["revision"] == 0
    (sb,) = body["sections"]["seedboxes"]
    assert (sb["id"], sb["source"]) == ("sb1", "yaml")
    assert sb["value"]["client"]["password"] == "***"
    assert sb["has_client_password"] and sb["has_key"] and not sb["has_password"]
    assert [d["id"] for d in body["sections"]["destinations"]] == ["tv", "movies", "default"]
    assert body["sections"]["destinations"][0]["value"] == {"path": str(env.data.parent / "lib/tv")}
    assert [r["id"] for r in body["sections"]["rules"]] == ["rules[0]", "rules[1]"]
    assert CLIENT_PASSWORD not in env.said()
    for op, args in (("config_set", {"value": seedbox()}), ("config_remove", {})):
        error = await env.refused(op, "read_only", section="seedboxes", id="sb1", **args)
        assert error["message"] == "seedboxes.sb1 is defined in the YAML file; edit it there"
    await env.refused("config_remove", "read_only", section="destinations", id="tv")
    assert env.stored() == [] and env.applied == []


async def test_set_a_seedbox_keeps_its_secrets_in_private_files(env: Env) -> None:
    pem, _ = keypair(PASSPHRASE)
    _, host_line = keypair()
    result = await env.ok(
        "config_set", section="seedboxes", id="sb2",
        value=seedbox(private_key=pem, passphrase=PASSPHRASE, host_key=f"[x]:1 {host_line}",
                      client={"type": "qbittorrent", "url": "http://127.0.0.1:9",
                              "username": "me", "password": CLIENT_PASSWORD}),
    )  # fmt: skip
    assert result == {"revision": 1, "applied": {"routing": True}}
    new, confirm = env.applied[-1]
    sb2 = new.seedboxes["sb2"]
    assert (sb2.passphrase, sb2.client and sb2.client.password, confirm) == (
        PASSPHRASE, CLIENT_PASSWORD, False,
    )  # fmt: skip
    secrets, pinned = env.data / "secrets", env.data / "known_hosts" / "sb2"
    assert sb2.key == str(secrets / "seedboxes-sb2-key") and sb2.known_hosts == str(pinned)
    assert asyncssh.import_private_key(Path(sb2.key).read_text(), PASSPHRASE)
    # known_hosts as OpenSSH and transfer/remote.py read it: [host]:port type base64
    assert pinned.read_text() == f"[127.0.0.1]:2222 {' '.join(host_line.split()[:2])}\n"
    assert [p.name for p in env.secret_files()] == [
        "sb2", "seedboxes-sb2-client_password", "seedboxes-sb2-key", "seedboxes-sb2-passphrase",
    ]  # fmt: skip
    assert all(mode(p) == 0o600 for p in env.secret_files())
    assert mode(secrets) == 0o700 and mode(pinned.parent) == 0o700
    (stored,) = env.stored()
    assert json.loads(stored[2]) == {
        "host": "127.0.0.1", "port": 2222, "user": "me", "remote_roots": ["/srv"],
        "key": str(secrets / "seedboxes-sb2-key"),
        "passphrase_file": str(secrets / "seedboxes-sb2-passphrase"),
        "known_hosts": str(pinned),
        "client": {"type": "qbittorrent", "url": "http://127.0.0.1:9", "username": "me",
                   "password_file": str(secrets / "seedboxes-sb2-client_password")},
    }  # fmt: skip
    body = await env.ok("config_get")
    entry = body["sections"]["seedboxes"][1]
    assert (entry["id"], entry["source"], entry["has_passphrase"], entry["has_host_key"]) == (
        "sb2", "runtime", True, True,
    )  # fmt: skip
    assert env.published[-1] == body
    # Nothing secret in an answer, the retained body or the store's file.
    said = env.said()
    env.store.close()
    stored_bytes = b"".join(p.read_bytes() for p in env.data.glob("q4d.sqlite3*"))
    for secret in (PASSPHRASE, CLIENT_PASSWORD, pem.splitlines()[1]):
        assert secret not in said and secret.encode() not in stored_bytes


async def test_a_change_keeps_secrets_left_out_and_drops_replaced_ones(env: Env) -> None:
    client = {"type": "qbittorrent", "url": "http://127.0.0.1:9", "password": CLIENT_PASSWORD}
    await env.ok("config_set", section="seedboxes", id="sb2",
                 value=seedbox(password=PASSWORD, client=client))  # fmt: skip
    secrets = env.data / "secrets"
    assert (secrets / "seedboxes-sb2-password").read_text() == PASSWORD
    # A form sends back what config_get showed: no secret, which stays.
    await env.ok("config_set", section="seedboxes", id="sb2", value=seedbox(port=2223,
                 client={"type": "qbittorrent", "url": "http://127.0.0.1:9"}))  # fmt: skip
    sb2 = env.applied[-1][0].seedboxes["sb2"]
    assert (sb2.port, sb2.password, sb2.client and sb2.client.password) == (
        2223, PASSWORD, CLIENT_PASSWORD,
    )  # fmt: skip
    # A key replaces the password; a null client password drops it; their files go.
    pem, _ = keypair()
    await env.ok("config_set", section="seedboxes", id="sb2", value=seedbox(private_key=pem,
                 client={"type": "qbittorrent", "url": "http://127.0.0.1:9", "password": None}))  # fmt: skip
    sb2 = env.applied[-1][0].seedboxes["sb2"]
    assert (sb2.password, sb2.client and sb2.client.password, sb2.key) == (
        None, None, str(secrets / "seedboxes-sb2-key"),
    )  # fmt: skip
    assert [p.name for p in env.secret_files()] == ["seedboxes-sb2-key"]
    result = await env.ok("config_remove", section="seedboxes", id="sb2")
    assert result["revision"] == 4 and env.secret_files() == [] and env.stored() == []
    assert "sb2" not in env.applied[-1][0].seedboxes
    await env.refused("config_remove", "not_found", section="seedboxes", id="sb2")


async def test_entries_refused_before_the_loader(env: Env) -> None:
    pem, _ = keypair(PASSPHRASE)
    cases = [
        (seedbox(id="other"), {"id": "must be 'sb2', the entry's id, when given"}),
        (seedbox(private_key="not a key"), {"private_key": "not a private key (expected -----BEGIN OPENSSH PRIVATE KEY----- …)"}),
        (seedbox(private_key=pem), {"private_key": "the key has a passphrase: set the passphrase option to it"}),
        (seedbox(private_key=pem, passphrase="wrong"), {"passphrase": "does not unlock the key in private_key"}),
        (seedbox(password=" padded"), {"password": "must not start or end with a space or line break"}),
        (seedbox(password=PASSWORD, host_key="ssh-ed25519 notbase64"), {"host_key": "not a public host key"}),
        (seedbox(password=PASSWORD, host_key="AAAA", known_hosts="/x"), {"host_key": "give host_key (the key) or known_hosts (a file), not both"}),
        (seedbox(password_file="/etc/hostname"), {"password_file": "send the secret itself (password), not a file"}),
        (seedbox(client={"type": "qbittorrent", "url": "http://x", "password_file": "/etc/hostname"}), {"client.password_file": "send the secret itself (client.password), not a file"}),
    ]  # fmt: skip
    for value, fields in cases:
        error = await env.refused(
            "config_set", "invalid", section="seedboxes", id="sb2", value=value
        )
        for key, reason in fields.items():
            assert error["fields"][key].startswith(reason), error
        assert all(line.startswith("seedboxes.sb2.") for line in error["errors"])
        assert PASSPHRASE not in json.dumps(error)
    await env.refused("config_set", "invalid", section="rules", id="r1", value={"order": "first"})
    assert env.stored() == [] and env.secret_files() == [] and env.applied == []


@pytest.mark.parametrize(
    ("section", "args", "message"),
    [
        ("config_set", {"section": "limits", "id": "x", "value": {}}, "value must be one of"),
        ("config_set", {"section": "rules", "id": "Bad Id", "value": {}}, "id must be lowercase"),
        ("config_set", {"section": "rules", "id": "r1"}, "required key not provided"),
        ("config_set", {"section": "rules", "id": "r1", "value": 3}, "value must be an object"),
        ("config_remove", {"section": "rules", "id": "r1", "confirm": "yes"}, "expected bool"),
    ],
)
async def test_bad_arguments(env: Env, section: str, args: dict[str, Any], message: str) -> None:
    error = await env.refused(section, "invalid_args", **args)
    assert message in error["message"]


def _mistakes() -> list[Any]:
    """check-config's mistakes that are about one seedbox or rule, as pytest params."""
    out = []
    for mutate, expected in MISTAKES:
        label = expected.split(":")[0]
        about_one = label.startswith(("seedboxes[0].", "rules[0].")) or "regular exp" in expected
        # An id is the command's argument; a runtime entry sends secrets, not their files.
        if about_one and label not in ("seedboxes[0].id", "seedboxes[0].client.password_file"):
            out.append(pytest.param(mutate, expected, id=expected[:60]))
    return out


@pytest.mark.parametrize(("mutate", "expected"), _mistakes())
async def test_the_check_config_mistakes_made_at_runtime(
    raw: dict[str, Any], tmp_path: Path, mutate: Any, expected: str
) -> None:
    """The same line check-config prints (the entry at its place in the merged file:
    after the YAML's seedbox, before the YAML's rules), and by key inside the entry."""
    mistaken = copy.deepcopy(raw)
    mutate(mistaken)
    is_seedbox = mistaken["seedboxes"] != raw["seedboxes"]
    section = "seedboxes" if is_seedbox else "rules"
    value = copy.deepcopy(mistaken[section][0])
    base = {**mistaken, section: raw[section]}  # the rest of the mistake stays in the file
    env = make_env(base, tmp_path)
    if is_seedbox:
        value.pop("id")
        expected = expected.replace("seedboxes[0]", "seedboxes[1]")
    error = await env.refused("config_set", "invalid", section=section, id="rt", value=value)
    assert any(expected in line for line in error["errors"]), error
    prefix = "seedboxes[1]" if is_seedbox else "rules[0]"
    assert error["fields"] == field_errors(error["errors"], prefix) and error["fields"], error
    assert env.stored() == [] and env.applied == [] and env.secret_files() == []


async def test_rules_by_order_before_the_yaml_rules_and_destinations(env: Env) -> None:
    film = {"destination": "films", "match": [{"field": "category", "is": "films"}]}
    error = await env.refused("config_set", "invalid", section="rules", id="films", value=film)
    assert error["fields"] == {"destination": "'films' is not in destinations"}
    assert error["errors"] == ["rules[0].destination: 'films' is not in destinations"]
    await env.ok("config_set", section="destinations", id="films", value=str(env.data / "films"))
    await env.ok("config_set", section="rules", id="films", value=film)
    await env.ok("config_set", section="rules", id="early", value={**film, "order": -1})
    await env.ok("config_set", section="rules", id="late", value={"ignore": True})
    body = await env.ok("config_get")
    rules = body["sections"]["rules"]
    assert [(r["id"], r["source"], r.get("order")) for r in rules] == [
        ("early", "runtime", -1), ("films", "runtime", 0), ("late", "runtime", 1),
        ("rules[0]", "yaml", None), ("rules[1]", "yaml", None),
    ]  # fmt: skip
    routing = env.applied[-1][0].routing
    assert [r.destination for r in routing.rules][:3] == ["films", "films", "default"]
    assert body["sections"]["destinations"][-1] == {
        "id": "films", "source": "runtime", "value": {"path": str(env.data / "films")},
    }  # fmt: skip
    # A destination a rule names stays; so does one items still go to.
    error = await env.refused("config_remove", "in_use", section="destinations", id="films")
    assert error["used_by"] == ["rules.early", "rules.films"]
    await env.ok("config_remove", section="rules", id="early")
    await env.ok("config_remove", section="rules", id="films")
    env.items.append(SimpleNamespace(id="1" * 16, seedbox="sb1", destination="films"))
    error = await env.refused("config_remove", "in_use", section="destinations", id="films")
    assert error["items"] == ["1" * 16]
    env.items.clear()
    result = await env.ok("config_remove", section="destinations", id="films")
    assert "films" not in env.applied[-1][0].routing.destinations and result["revision"] == 7


async def test_removing_a_seedbox_with_unfinished_items_asks_for_confirmation(env: Env) -> None:
    await env.ok("config_set", section="seedboxes", id="sb2", value=seedbox(password=PASSWORD))
    env.items.append(SimpleNamespace(id="2" * 16, seedbox="sb2", destination="tv"))
    error = await env.refused("config_remove", "confirm_required", section="seedboxes", id="sb2")
    assert error["items"] == ["2" * 16] and len(env.stored()) == 1
    await env.ok("config_remove", section="seedboxes", id="sb2", confirm=True)
    assert env.applied[-1][1] is True and env.stored() == [] and env.secret_files() == []


async def test_stored_when_valid_even_if_apply_fails(env: Env) -> None:
    env.failing = True
    error = await env.refused("config_set", "apply_failed", section="destinations", id="x",
                              value={"path": "/srv/x"})  # fmt: skip
    assert error["revision"] == 1 and len(env.stored()) == 1
    assert env.published[-1]["revision"] == 1


def test_merge_puts_runtime_entries_in_place_and_the_yaml_wins(raw: dict[str, Any]) -> None:
    layer = {
        "seedboxes": {"sb1": seedbox(), "sb9": seedbox()},
        "destinations": {"tv": "/elsewhere", "docs": "/srv/docs"},
        "rules": {"b": {"order": 1, "ignore": True}, "a": {"order": 1, "ignore": True}},
    }
    merged, shadowed = merge(raw, layer)
    assert shadowed == ["seedboxes.sb1", "destinations.tv"]
    assert [sb["id"] for sb in merged["seedboxes"]] == ["sb1", "sb9"]
    assert merged["destinations"]["tv"] == raw["destinations"]["tv"]
    assert [r.get("id") for r in merged["rules"]] == ["a", "b", None, None]
    assert "order" not in merged["rules"][0] and "sb9" not in json.dumps(raw)


async def test_export_passes_check_config_and_loads_the_same(
    env: Env, raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    _, host_line = keypair()
    await env.ok("config_set", section="destinations", id="films", value=str(env.data / "films"))
    await env.ok("config_set", section="rules", id="films",
                 value={"destination": "films", "match": [{"field": "category", "is": "films"}]})  # fmt: skip
    await env.ok("config_set", section="seedboxes", id="sb2",
                 value=seedbox(password=PASSWORD, host_key=host_line))  # fmt: skip
    assert cli.main(["config", "export", "-c", str(path)]) == 0
    exported = capsys.readouterr().out
    assert PASSWORD not in exported and CLIENT_PASSWORD not in exported
    assert "#   seedboxes[0].client.password\n" in exported  # written as ***: to fill in
    moved = tmp_path / "exported.yaml"
    moved.write_text(exported)
    assert cli.main(["check-config", "-c", str(moved)]) == 0
    assert (
        "OK (bridge 'test', 2 seedbox(es), 4 destination(s), 3 rule(s))" in capsys.readouterr().out
    )
    loaded = ConfigSource.read(moved, {}).load()
    assert loaded.seedboxes["sb2"] == env.config.seedboxes["sb2"]
    assert loaded.seedboxes["sb2"].password == PASSWORD
    assert loaded.routing.rules == env.config.routing.rules
    assert loaded.routing.destinations == env.config.routing.destinations


async def test_a_runtime_entry_the_file_no_longer_fits_is_named_at_start(
    env: Env, raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await env.ok("config_set", section="rules", id="mv", value={"destination": "movies"})
    del raw["destinations"]["movies"], raw["rules"][1], raw["type_codes"]["M"]
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["check-config", "-c", str(path)]) == 1
    assert (
        "rules[0].destination: 'movies' is not in destinations (in rules.mv, set from Home "
        "Assistant)" in capsys.readouterr().err
    )
    # The way out while the bridge cannot start (and so cannot be asked over MQTT).
    lock = DataDirLock(env.data)
    lock.acquire()  # as a running bridge holds it
    assert cli.main(["config", "remove", "rules", "mv", "-c", str(path)]) == 1
    assert "stop the bridge first" in capsys.readouterr().err
    lock.release()
    assert cli.main(["config", "remove", "rules", "mv", "-c", str(path)]) == 0
    assert capsys.readouterr().out == "removed rules.mv (revision 2)\n"
    assert cli.main(["config", "remove", "rules", "mv", "-c", str(path)]) == 1
    assert cli.main(["check-config", "-c", str(path)]) == 0


def test_the_environment_alone_reads_as_through_load_config(tmp_path: Path) -> None:
    """`run` and `check-config` read through ConfigSource: the same as load_config."""
    absent = tmp_path / "absent.yaml"
    creds = tmp_path / "credentials"
    creds.write_text("me:pass,word\n")
    environ = {**SEED_DOCKER_RUN, "Q4D_CREDS": str(creds)}
    assert ConfigSource.read(absent, environ).load() == load_config(absent, environ)
    incomplete = {"Q4D_BUS_HOST": "mqtt.lan"}
    with pytest.raises(ConfigError) as through_source:
        ConfigSource.read(absent, incomplete).load()
    with pytest.raises(ConfigError) as through_loader:
        load_config(absent, incomplete)
    assert through_source.value.errors == through_loader.value.errors


async def test_junk_entries_are_refused_clearly_never_with_internal(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Random values under the keys the sections know (and some they do not): each is
    answered `invalid` (or stored when it happens to be valid), logged without values."""
    rng = random.Random(20)
    keys = {
        "seedboxes": [*seedbox(), "port", "key", "password", "passphrase", "private_key",
                      "host_key", "known_hosts", "client", "engine", "reconcile", "junk"],
        "destinations": ["path", "owner", "extract", "handoff", "junk"],
        "rules": ["order", "destination", "match", "subdir", "ignore", "engine", "junk"],
    }  # fmt: skip
    scalars = [None, True, 0, -1, 2**40, 1.5, "", "x", "/abs", "ssh-ed25519 AAAA", "-----BEGIN"]

    def junk(depth: int) -> Any:
        roll = rng.random()
        if depth < 2 and roll < 0.2:
            return [junk(depth + 1) for _ in range(rng.randrange(3))]
        if depth < 2 and roll < 0.4:
            return {rng.choice(["type", "url", "field", "is", "path", "x"]): junk(depth + 1)}
        return rng.choice(scalars)

    codes: set[str] = set()
    for n in range(150):
        section = rng.choice(list(keys))
        value = {k: junk(0) for k in rng.sample(keys[section], rng.randrange(1, 5))}
        if section == "seedboxes":
            value = {**seedbox(), **value}
        answer = await env.ask("config_set", section=section, id=f"e{n}", value=value)
        codes.add("ok" if answer["ok"] else answer["error"]["code"])
    assert codes <= {"ok", "invalid"} and "invalid" in codes, codes
    assert "refused: invalid (" in caplog.text and "Traceback" not in caplog.text


async def test_another_address_needs_its_host_key_confirmed_again(env: Env) -> None:
    _, host_line = keypair()
    pinned = env.data / "known_hosts" / "sb2"
    await env.ok("config_set", section="seedboxes", id="sb2",
                 value=seedbox(password=PASSWORD, host_key=host_line))  # fmt: skip
    await env.ok("config_set", section="seedboxes", id="sb2", value=seedbox(host_key=None))
    assert env.applied[-1][0].seedboxes["sb2"].known_hosts == str(pinned)  # same address: kept
    error = await env.refused("config_set", "invalid", section="seedboxes", id="sb2",
                              value={**seedbox(host_key=None), "port": 2200})  # fmt: skip
    assert error["fields"]["known_hosts"].startswith("required")
    assert pinned.exists()  # refused: nothing changed
    # Trust on first use: the key pinned for the old address goes, the next is pinned.
    await env.ok("config_set", section="seedboxes", id="sb2", value=seedbox(port=2200))
    assert not pinned.exists() and env.applied[-1][0].seedboxes["sb2"].trust_on_first_use


async def test_an_implicit_default_destination_can_go_a_named_one_cannot(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    """With no default_destination in the file, the first destination is the default:
    removing it moves the default on (a bridge set up from Home Assistant alone could
    otherwise never remove its first destination); a named default stays in use."""
    bare = {k: v for k, v in raw.items() if k not in ("destinations", "default_destination",
                                                       "rules", "type_codes")}  # fmt: skip
    implicit = make_env(bare, tmp_path / "implicit")
    for name in ("first", "second"):
        path = str(tmp_path / name)
        await implicit.ok("config_set", section="destinations", id=name, value=path)
    assert implicit.config.routing.default_destination == "first"
    await implicit.ok("config_remove", section="destinations", id="first")
    assert implicit.config.routing.default_destination == "second"
    named = make_env({**bare, "destinations": {"home": str(tmp_path / "home")},
                      "default_destination": "home"}, tmp_path / "named")  # fmt: skip
    await named.ok("config_set", section="destinations", id="extra", value=str(tmp_path / "x"))
    named.desk.source.base["default_destination"] = "extra"  # as if the file named it
    error = await named.refused("config_remove", "in_use", section="destinations", id="extra")
    assert error["used_by"] == ["default_destination"]
