"""The dispatch settings as a runtime singleton section, through the command desk on a
real store: one entry, id `dispatch`, listed with every value in force and where it
comes from (default, runtime, yaml); keys left out take their defaults; values the
loader refuses are named by key; another id is refused; a YAML `dispatch:` makes it
read-only; removing it goes back to the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.config.model import DispatchConfig

from tests.bridge.test_runtime_config import Env, make_env

GiB = 1024**3
# The documented defaults (docs/configuration.md, `dispatch`) as config_get shows them:
# sizes in bytes, durations in seconds.
DISPATCH_DEFAULTS = {
    "disk_weight": 1.0, "download_weight": 2.0, "bandwidth_weight": 0.1, "min_score": -1.0,
    "size_estimate": 10 * GiB, "history": 200, "categories": [], "watch_interval": 5.0,
    "fetch_timeout": 30.0,
}  # fmt: skip


async def listed(env: Env) -> dict[str, Any]:
    entries = (await env.ok("config_get"))["sections"]["dispatch"]
    assert len(entries) == 1, entries
    entry: dict[str, Any] = entries[0]
    return entry


async def test_set_shows_every_value_and_remove_goes_back_to_the_defaults(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    env: Env = make_env(raw, tmp_path)
    assert await listed(env) == {"id": "dispatch", "source": "default", "value": DISPATCH_DEFAULTS}

    result = await env.ok("config_set", section="dispatch", id="dispatch",
                          value={"disk_weight": 2, "download_weight": 1})  # fmt: skip
    assert result["revision"] == 1
    new, _ = env.applied[-1]
    assert new.dispatch == DispatchConfig(disk_weight=2.0, download_weight=1.0)
    assert await listed(env) == {
        "id": "dispatch", "source": "runtime",
        "value": {**DISPATCH_DEFAULTS, "disk_weight": 2.0, "download_weight": 1.0},
    }  # fmt: skip
    assert env.published[-1]["sections"]["dispatch"] == [await listed(env)]

    # What config_get shows is taken back as it is (numbers), as are the YAML's strings.
    shown = (await listed(env))["value"]
    await env.ok("config_set", section="dispatch", id="dispatch",
                 value={**shown, "size_estimate": "20GiB", "watch_interval": "1m",
                        "categories": ["music"]})  # fmt: skip
    assert env.applied[-1][0].dispatch == DispatchConfig(
        disk_weight=2.0, download_weight=1.0, size_estimate=20 * GiB, watch_interval=60.0,
        categories=("music",),
    )  # fmt: skip
    value = (await listed(env))["value"]
    assert (value["size_estimate"], value["watch_interval"], value["categories"]) == (
        20 * GiB, 60.0, ["music"],
    )  # fmt: skip

    await env.ok("config_remove", section="dispatch", id="dispatch")
    assert env.applied[-1][0].dispatch == DispatchConfig() and env.stored() == []
    assert await listed(env) == {"id": "dispatch", "source": "default", "value": DISPATCH_DEFAULTS}
    error = await env.refused("config_remove", "not_found", section="dispatch", id="dispatch")
    assert error["message"] == "no runtime entry dispatch"


async def test_values_refused_by_key(raw: dict[str, Any], tmp_path: Path) -> None:
    env: Env = make_env(raw, tmp_path)
    error = await env.refused(
        "config_set", "invalid", section="dispatch", id="dispatch",
        value={"disk_weight": -1, "history": 0, "size_estimate": "huge", "weight": 3},
    )  # fmt: skip
    assert set(error["fields"]) == {"disk_weight", "history", "size_estimate", "weight"}
    assert error["fields"]["disk_weight"] == "value must be at least 0"
    assert "dispatch.history: value must be at least 1" in error["errors"]
    error = await env.refused("config_set", "invalid", section="dispatch", id="dispatch",
                              value="fast")  # fmt: skip
    assert error["errors"] == ["dispatch.base: expected a mapping of keys"]
    assert env.stored() == [] and env.applied == []


@pytest.mark.parametrize("op", ["config_set", "config_remove"])
async def test_another_id_is_refused(raw: dict[str, Any], tmp_path: Path, op: str) -> None:
    env: Env = make_env(raw, tmp_path)
    args: dict[str, Any] = {"value": {}} if op == "config_set" else {}
    error = await env.refused(op, "invalid_args", section="dispatch", id="weights", **args)
    # (how voluptuous says where, `@ data['id']` or `at 'id'`, differs by its version)
    assert error["message"].startswith(f"{op}: the dispatch section's only id is 'dispatch'")
    assert env.stored() == []


async def test_a_yaml_dispatch_is_read_only(raw: dict[str, Any], tmp_path: Path) -> None:
    raw["dispatch"] = {"min_score": 0, "fetch_timeout": "1m"}
    env: Env = make_env(raw, tmp_path)
    assert await listed(env) == {
        "id": "dispatch", "source": "yaml",
        "value": {**DISPATCH_DEFAULTS, "min_score": 0.0, "fetch_timeout": 60.0},
    }  # fmt: skip
    error = await env.refused("config_set", "read_only", section="dispatch", id="dispatch",
                              value={"disk_weight": 3})  # fmt: skip
    assert error["message"] == "dispatch is defined in the YAML file; edit it there"
    await env.refused("config_remove", "read_only", section="dispatch", id="dispatch")
    assert env.stored() == []
