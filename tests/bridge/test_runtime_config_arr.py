"""Sonarr/Radarr instances (`arr`) in the runtime configuration layer, through the
command desk on a real store and real secret files: an instance set from Home Assistant
with its API key kept as a 0600 file (never in the store, an answer or the retained
body), listed redacted with has_api_key, the key kept when an edit leaves it out, values
the loader refuses, YAML instances read-only, and an instance a rule imports to kept
until the rule goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.bridge.test_runtime_config import Env, make_env, mode

KEY = "a1b2c3d4e5f60718293a"
OTHER_KEY = "ffeeddccbbaa99887766"


def sonarr(**changes: Any) -> dict[str, Any]:
    return {"type": "sonarr", "url": "http://127.0.0.1:8989", "api_key": KEY} | changes


async def test_an_instance_keeps_its_key_in_a_private_file(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    env: Env = make_env(raw, tmp_path)
    result = await env.ok("config_set", section="arr", id="tv", value=sonarr())
    assert result["revision"] == 1
    new, _ = env.applied[-1]
    assert (new.arr["tv"].type, new.arr["tv"].api_key) == ("sonarr", KEY)
    key_file = env.data / "secrets" / "arr-tv-api_key"
    assert key_file.read_text() == KEY
    assert (mode(key_file), mode(key_file.parent)) == (0o600, 0o700)
    [(section, ident, stored)] = env.stored()
    assert (section, ident, json.loads(stored)) == (
        "arr", "tv", {"type": "sonarr", "url": "http://127.0.0.1:8989",
                      "api_key_file": str(key_file)},
    )  # fmt: skip

    body = await env.ok("config_get")
    [entry] = body["sections"]["arr"]
    assert entry == {
        "id": "tv", "source": "runtime", "has_api_key": True,
        "value": {"type": "sonarr", "url": "http://127.0.0.1:8989", "api_key_file": str(key_file)},
    }  # fmt: skip
    assert list(body["sections"]) == [
        "seedboxes", "destinations", "rules", "arr", "home_clients", "dispatch",
    ]  # fmt: skip
    assert env.published[-1]["sections"]["arr"] == [entry]

    # an edit without the key keeps it; with one, replaces it (null drops it: refused,
    # the key is required)
    await env.ok("config_set", section="arr", id="tv", value=sonarr_without_key(timeout="10s"))
    new, _ = env.applied[-1]
    assert (new.arr["tv"].api_key, new.arr["tv"].timeout) == (KEY, 10.0)
    await env.ok("config_set", section="arr", id="tv", value=sonarr(api_key=OTHER_KEY))
    assert env.applied[-1][0].arr["tv"].api_key == OTHER_KEY == key_file.read_text()
    assert KEY not in env.said() and OTHER_KEY not in env.said()
    assert not any(KEY in s or OTHER_KEY in s for row in env.stored() for s in row)

    await env.ok("config_remove", section="arr", id="tv")
    assert env.applied[-1][0].arr == {} and not key_file.exists() and env.stored() == []


def sonarr_without_key(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in sonarr(**changes).items() if k != "api_key"}


async def test_values_refused_leave_the_layer_as_it_was(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    env: Env = make_env(raw, tmp_path)
    error = await env.refused(
        "config_set", "invalid", section="arr", id="tv",
        value=sonarr(type="lidarr", url="ftp://x"),
    )  # fmt: skip
    assert set(error["fields"]) == {"type", "url"}
    assert "arr.tv.type: value must be one of ['radarr', 'sonarr']" in error["errors"]
    error = await env.refused("config_set", "invalid", section="arr", id="tv",
                              value=sonarr_without_key())  # fmt: skip
    assert error["fields"] == {"api_key": "required key not provided"}
    error = await env.refused(
        "config_set", "invalid", section="arr", id="tv",
        value=sonarr_without_key(api_key_file="/etc/hostname"),
    )  # fmt: skip
    assert error["fields"] == {"api_key_file": "send the secret itself (api_key), not a file"}
    error = await env.refused("config_set", "invalid", section="arr", id="tv",
                              value=sonarr(api_key=" padded "))  # fmt: skip
    assert error["fields"] == {"api_key": "must not start or end with a space or line break"}
    error = await env.refused("config_set", "invalid", section="arr", id="tv",
                              value=sonarr(api_key=None))  # null: no key  # fmt: skip
    assert error["fields"] == {"api_key": "required key not provided"}
    assert env.stored() == [] and env.applied == [] and env.secret_files() == []


async def test_yaml_instances_are_read_only(raw: dict[str, Any], tmp_path: Path) -> None:
    raw["arr"] = {"films": {"type": "radarr", "url": "http://127.0.0.1:7878", "api_key": KEY}}
    env: Env = make_env(raw, tmp_path)
    [entry] = (await env.ok("config_get"))["sections"]["arr"]
    assert (entry["id"], entry["source"], entry["has_api_key"]) == ("films", "yaml", True)
    assert entry["value"]["api_key"] == "***" and KEY not in env.said()
    error = await env.refused("config_set", "read_only", section="arr", id="films", value=sonarr())
    assert error["message"] == "arr.films is defined in the YAML file; edit it there"
    await env.refused("config_remove", "read_only", section="arr", id="films")


async def test_an_instance_a_rule_imports_to_stays(raw: dict[str, Any], tmp_path: Path) -> None:
    env: Env = make_env(raw, tmp_path)
    rule = {"destination": "tv", "match": [{"field": "category", "is": "tv"}],
            "arr_import": {"instance": "tv", "import_mode": "Copy"}}  # fmt: skip
    error = await env.refused("config_set", "invalid", section="rules", id="shows", value=rule)
    assert error["errors"] == ["rules[0].arr_import: 'tv' is not under arr"]
    await env.ok("config_set", section="arr", id="tv", value=sonarr())
    await env.ok("config_set", section="rules", id="shows", value=rule)
    error = await env.refused("config_remove", "in_use", section="arr", id="tv")
    assert error["message"] == "arr instance tv is still used by rules.shows"
    await env.ok("config_remove", section="rules", id="shows")
    await env.ok("config_remove", section="arr", id="tv")
    assert env.stored() == [] and env.secret_files() == []
