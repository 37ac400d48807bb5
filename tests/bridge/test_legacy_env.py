"""Queue4Download's environment variables as deprecated aliases, list elements from the
environment, a configuration from the environment alone, and how a seedbox logs in
(key, encrypted key, password) as the loader checks it."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config import environment
from q4d_bridge.config.legacy_env import ALIASES, NAMES, split_credentials, translate
from q4d_bridge.config.loader import ConfigError, load_config, parse_config

from tests.bridge.test_classic import HASH
from tests.bridge.test_fuzz import COMPLETED, REMOTE, message
from tests.helpers.configs import bridge_config, errors_of

# The seed's `docker run` example (000_*: Queue4Download's README), with its mounted
# credentials file named as its compose example does.
SEED_DOCKER_RUN = {
    "Q4D_BUS_HOST": "mqtt.your-broker.com",
    "Q4D_BUS_PORT": "1883",
    "Q4D_USER": "your_mqtt_username",
    "Q4D_PW": "your_mqtt_password",
    "Q4D_HOST": "your.seedbox.com",
    "Q4D_THREADS": "4",
    "Q4D_SEGMENTS": "8",
    "Q4D_PATH": "/downloads",
}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "_warned", set())


def settings(environ: dict[str, str], **kw: Any) -> dict[tuple[Any, ...], Any]:
    legacy = translate(environ, **kw)
    assert legacy.errors == []
    return {path: value for _name, path, value in legacy.settings}


def test_each_alias_sets_its_key_with_its_type_and_names_its_replacement(tmp_path: Path) -> None:
    environ = {**SEED_DOCKER_RUN, "Q4D_CREDS": "me:s3cret", "Q4D_LABELLING": "false"}
    assert set(environ) == NAMES == {a.name for a in ALIASES}
    assert settings(environ, credentials_file=str(tmp_path / "none")) == {
        ("broker", "host"): "mqtt.your-broker.com",
        ("broker", "port"): 1883,
        ("broker", "username"): "your_mqtt_username",
        ("broker", "password"): "your_mqtt_password",
        ("seedboxes", 0, "host"): "your.seedbox.com",
        ("seedboxes", 0, "user"): "me",
        ("transfers", "lftp", "parallel_files"): 4,
        ("transfers", "lftp", "segments"): 8,
        ("destinations", "default"): "/downloads",
        ("classic", "labels"): False,
    }
    notes = translate(environ).notes
    assert notes["Q4D_BUS_HOST"] == (
        "Q4D_BUS_HOST is Queue4Download's name and is deprecated: "
        "use Q4D_BROKER__HOST (broker.host)"
    )
    assert "Q4D_SEEDBOXES__0__PASSWORD_FILE" in notes["Q4D_CREDS"]
    assert set(notes) == NAMES


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("ON", True), ("0", False), ("no", False),
     ("enabled", False)],
)  # fmt: skip
def test_labelling_is_true_only_as_q4d_reads_it(value: str, expected: bool) -> None:
    assert settings({"Q4D_LABELLING": value})[("classic", "labels")] is expected


@pytest.mark.parametrize(
    ("text", "user", "password"),
    [
        ("fear:loathing", "fear", "loathing"),  # Q4D's sample
        ("me,pw", "me", "pw"),  # lftp's -u form
        ("me:a:b,c", "me", "a:b,c"),  # the first separator splits
        ("me,a:b", "me", "a:b"),
        ("me", "me", None),
        ("me:", "me", ""),
    ],
)
def test_credentials_split_at_the_first_colon_or_comma(
    text: str, user: str, password: str | None
) -> None:
    assert split_credentials(text) == (user, password)


def test_creds_from_a_file_the_first_line_that_is_not_blank(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("\n  me:pa ss:word  \nother:line\n")
    legacy = translate({"Q4D_CREDS": str(creds)})
    assert legacy.settings == [("Q4D_CREDS", ("seedboxes", 0, "user"), "me")]
    (password,) = [d for d in legacy.defaults if d.path == ("seedboxes", 0, "password")]
    assert password.value == "pa ss:word" and password.unless == ("key", "password_file")


def test_the_mounted_credentials_file_is_read_when_q4d_creds_is_not_set(tmp_path: Path) -> None:
    """Q4D's docker-run example mounts /app/credentials and sets no Q4D_CREDS."""
    creds = tmp_path / "credentials"
    creds.write_text("me:pw\n")
    assert settings(SEED_DOCKER_RUN, credentials_file=str(creds))[("seedboxes", 0, "user")] == "me"
    missing = settings(SEED_DOCKER_RUN, credentials_file=str(tmp_path / "absent"))
    assert ("seedboxes", 0, "user") not in missing


def test_bad_values_name_the_variable_and_never_echo_a_secret(tmp_path: Path) -> None:
    legacy = translate(
        {"Q4D_BUS_PORT": "18x3", "Q4D_THREADS": "many", "Q4D_CREDS": str(tmp_path / "nope")}
    )
    assert legacy.errors == [
        "Q4D_BUS_PORT: expected a whole number, got '18x3'",
        f"Q4D_CREDS: cannot read {tmp_path / 'nope'}: No such file or directory",
        "Q4D_THREADS: expected a whole number, got 'many'",
    ]
    assert translate({"Q4D_CREDS": ":pw-only"}).errors == [
        "Q4D_CREDS: expected user:password (or a file holding that line)"
    ]
    assert errors_of({}, {"Q4D_BROKER__PASSWORD": "a: b: c"}) == [
        "Q4D_BROKER__PASSWORD: not a valid YAML value (quote it)"
    ]


def test_empty_variables_count_as_unset() -> None:
    legacy = translate({"Q4D_USER": "", "Q4D_PW": ""})
    assert legacy.settings == [] and legacy.defaults == [] and legacy.notes == {}


def test_the_seed_docker_run_environment_alone_runs_a_seedbox(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("me:pass,word\n")
    environ = {**SEED_DOCKER_RUN, "Q4D_CREDS": str(creds)}
    config = load_config(tmp_path / "absent.yaml", environ)
    assert (config.bridge_id, config.data_dir) == ("q4d", Path("/data"))
    broker = config.broker
    assert (broker.host, broker.port, broker.username, broker.password) == (
        "mqtt.your-broker.com", 1883, "your_mqtt_username", "your_mqtt_password"
    )  # fmt: skip
    (seedbox,) = config.seedboxes.values()
    assert (seedbox.id, seedbox.host, seedbox.port, seedbox.user) == (
        "seedbox1", "your.seedbox.com", 22, "me"
    )  # fmt: skip
    assert (seedbox.key, seedbox.password) == (None, "pass,word")
    # Q4D confirmed any host key; the bridge pins the first one it sees
    assert seedbox.trust_on_first_use and seedbox.known_hosts == "/data/known_hosts/seedbox1"
    assert config.routing.destinations == {"default": Path("/downloads")}
    assert config.routing.default_destination == "default"
    assert (config.transfers.lftp.parallel_files, config.transfers.lftp.segments) == (4, 8)
    classic = config.classic
    assert (classic.enabled, classic.labels, classic.seedbox) == (True, True, "seedbox1")
    assert "pass,word" not in repr(config) and "your_mqtt_password" not in repr(config)


def test_without_the_file_an_incomplete_environment_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", {"Q4D_BUS_HOST": "mqtt.lan"})
    assert info.value.errors == [
        f"{tmp_path / 'absent.yaml'}: not found, and the environment alone is not a whole "
        "configuration",
        # the old variables turn classic mode on, and it speaks for a seedbox (a bridge
        # without seedboxes is valid otherwise: one configured from Home Assistant)
        "classic.seedbox: classic mode needs a configured seedbox",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", {"Q4D_CONFIG": str(tmp_path / "absent.yaml")})
    assert info.value.errors == [
        f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
    ]


def test_the_bridges_own_variables_win_over_the_aliases_and_the_file_over_their_defaults(
    raw: dict[str, Any],
) -> None:
    raw["classic"] = {"enabled": False}
    environ = {
        "Q4D_BUS_HOST": "old.lan",
        "Q4D_BROKER__HOST": "new.lan",
        "Q4D_HOST": "seed.example",
        "Q4D_CREDS": "me:pw",
    }
    config = parse_config(copy.deepcopy(raw), environ)
    assert config.broker.host == "new.lan"
    (seedbox,) = config.seedboxes.values()
    # the file's seedbox keeps its id, key and pinned host key; its host is Q4D_HOST's
    assert (seedbox.id, seedbox.host, seedbox.user) == ("sb1", "seed.example", "me")
    assert seedbox.key == raw["seedboxes"][0]["key"] and seedbox.password is None
    assert not seedbox.trust_on_first_use
    assert (config.bridge_id, str(config.data_dir)) == ("test", raw["data_dir"])
    assert not config.classic.enabled


def test_each_deprecation_is_logged_once(
    caplog: pytest.LogCaptureFixture, raw: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        parse_config(copy.deepcopy(raw), {"Q4D_BUS_HOST": "mqtt.lan", "Q4D_SEGMENTS": "6"})
    messages = [r.getMessage() for r in caplog.records]
    assert sorted(messages) == [
        "Q4D_BUS_HOST is Queue4Download's name and is deprecated: use Q4D_BROKER__HOST (broker.host)",
        "Q4D_SEGMENTS is Queue4Download's name and is deprecated: use "
        "Q4D_TRANSFERS__LFTP__SEGMENTS (transfers.lftp.segments)",
    ]


def test_list_elements_from_the_environment(raw: dict[str, Any], tmp_path: Path) -> None:
    known = tmp_path / "pinned"
    known.write_text("h")
    config = parse_config(
        copy.deepcopy(raw),
        {
            "Q4D_SEEDBOXES__0__KNOWN_HOSTS": str(known),
            "Q4D_SEEDBOXES__0__REMOTE_ROOTS": "[/home/me/downloads]",
            "Q4D_SEEDBOXES__1__ID": "sb2",
            "Q4D_SEEDBOXES__1__HOST": "other.example",
            "Q4D_SEEDBOXES__1__USER": "me",
            "Q4D_SEEDBOXES__1__KEY": raw["seedboxes"][0]["key"],
            "Q4D_SEEDBOXES__1__KNOWN_HOSTS": str(known),
        },
    )
    assert config.seedboxes["sb1"].known_hosts == str(known)
    assert config.seedboxes["sb1"].remote_roots == ("/home/me/downloads",)
    assert config.seedboxes["sb2"].host == "other.example"
    assert errors_of(raw, {"Q4D_SEEDBOXES__2__HOST": "x"}) == [
        "Q4D_SEEDBOXES__2__HOST: cannot set seedboxes[2].host: seedboxes has 1 element(s), "
        "so the next index is 1"
    ]
    assert errors_of(raw, {"Q4D_SEEDBOXES__0": "x"}) == [
        "Q4D_SEEDBOXES__0: cannot set seedboxes[0]: seedboxes is not a mapping"
    ]
    assert errors_of(raw, {"Q4D_BRIDGE__ID__X": "x"}) == [
        "Q4D_BRIDGE__ID__X: cannot set bridge.id.x: bridge.id is not a mapping"
    ]


def test_a_seedbox_logs_in_by_key_or_by_password(raw: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "ssh.password"
    secret.write_text('pw with spaces, "quotes" and \\ \n')
    sb = raw["seedboxes"][0]
    key = sb.pop("key")
    config = parse_config({**raw, "seedboxes": [{**sb, "password_file": str(secret)}]})
    seedbox = config.seedboxes["sb1"]
    assert (seedbox.key, seedbox.password) == (None, 'pw with spaces, "quotes" and \\')
    assert "quotes" not in repr(seedbox) and "quotes" not in repr(config)

    passphrase = tmp_path / "key.passphrase"
    passphrase.write_text("open sesame\n")
    config = parse_config(
        {**raw, "seedboxes": [{**sb, "key": key, "passphrase_file": str(passphrase)}]}
    )
    assert config.seedboxes["sb1"].passphrase == "open sesame"
    assert "sesame" not in repr(config)

    def problems(**keys: Any) -> list[str]:
        return errors_of({**raw, "seedboxes": [{**sb, **keys}]})

    assert problems() == [
        "seedboxes[0].key: required (a private key file), or password_file to log in by password"
    ]
    assert problems(key=key, password="pw") == [
        "seedboxes[0].password: set key or password(_file), not both"
    ]
    assert problems(password="pw", passphrase="x") == [
        "seedboxes[0].passphrase: only with key (the passphrase of that key)"
    ]
    assert problems(password="two\nlines") == [
        "seedboxes[0].password: must be one line without control characters"
    ]
    assert problems(password_file=str(tmp_path / "absent")) == [
        f"seedboxes[0].password_file: cannot read {tmp_path / 'absent'}: No such file or directory"
    ]


def test_a_key_wins_over_the_password_in_q4d_creds(raw: dict[str, Any]) -> None:
    """Q4D setups that logged in by key still needed some password for lftp."""
    config = parse_config(copy.deepcopy(raw), {"Q4D_CREDS": "me:xyz"})
    seedbox = config.seedboxes["sb1"]
    assert (seedbox.user, seedbox.password, seedbox.key) == ("me", None, raw["seedboxes"][0]["key"])


def test_rsync_with_a_password_needs_sshpass(
    raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATH with lftp and rsync but no sshpass, as on a machine without it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("lftp", "rsync"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    sb = {k: v for k, v in raw["seedboxes"][0].items() if k != "key"}
    for where in ({"engine": "rsync"}, {}):
        rules = [] if where else [{"destination": "tv", "engine": "rsync"}]
        assert errors_of(
            {**raw, "rules": rules, "seedboxes": [{**sb, **where, "password": "pw"}]}
        ) == [
            "seedboxes[0].password: the rsync engine needs sshpass to give ssh the password "
            "(apt-get install sshpass), or use the lftp or sftp engine"
        ]
    parse_config({**raw, "seedboxes": [{**sb, "engine": "lftp", "password": "pw"}]})


@pytest.mark.parametrize("labelling", ["true", "false"])
async def test_q4d_labelling_false_answers_nothing_on_label(tmp_path: Path, labelling: str) -> None:
    """LabelD.sh hears the bridge on `Label` only with labelling on; q4d-labeld's own
    topic is another matter."""
    (tmp_path / "id_test").write_text("not a key; nothing connects\n")
    (tmp_path / "known_hosts").write_text("")
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=tmp_path / "id_test",
        known_hosts=tmp_path / "known_hosts", remote_root=REMOTE, classic=True,
    )  # fmt: skip
    bridge = Bridge(parse_config(raw, {"Q4D_LABELLING": labelling}))
    try:
        bridge.router.handle(message("Down", f"/elsewhere/x\t{HASH}\tT".encode()))
        payload = {"v": 1, "event_id": "e1", "path": f"{REMOTE}/Film", "hash": HASH}
        bridge.router.handle(message(COMPLETED, json.dumps(payload).encode()))
        label = [m.payload for _seq, m in bridge.store.outbox(1000) if m.topic == "Label"]
        expected = [f"{HASH}\tNOPE".encode(), f"{HASH}\tQUEUED".encode()]
        assert label == (expected if labelling == "true" else [])
        v1 = [m for _seq, m in bridge.store.outbox(1000) if m.topic == "q4d/seedbox/sb1/label"]
        assert len(v1) == 1
    finally:
        bridge.store.close()


def test_a_small_file_beside_q4d_variables_maps_the_type_codes(tmp_path: Path) -> None:
    """migrating-from-q4d.md: type_mapping.json becomes two keys in a file; the rest
    stays in the environment."""
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "destinations: {movies: /media/movies, tv: /media/tv}\ntype_codes: {MOV: movies, TV: tv}\n"
    )
    config = load_config(path, {**SEED_DOCKER_RUN, "Q4D_CREDS": "me:pw"})
    assert config.routing.type_codes == {"MOV": "movies", "TV": "tv"}
    assert config.routing.destinations == {
        "movies": Path("/media/movies"), "tv": Path("/media/tv"), "default": Path("/downloads")
    }  # fmt: skip
    assert config.routing.default_destination == "default"
    assert config.seedboxes["seedbox1"].password == "pw"


def test_check_config_names_the_environment_when_there_is_no_file(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("me:pass,word\n")
    env = {**os.environ, **SEED_DOCKER_RUN, "Q4D_CREDS": str(creds)}
    absent = tmp_path / "absent.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", "check-config", "--config", str(absent)],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == "the environment: OK (bridge 'q4d', 1 seedbox(es), 1 destination(s), 0 rule(s))"
    assert str(absent) not in done.stdout
