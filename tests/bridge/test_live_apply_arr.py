"""A Sonarr instance added to a running bridge (Bridge.apply, as config_set does) with a
destination that imports to it: the next payload landing there is imported by the
stand-in Sonarr (tests/bridge/test_arr_import.py's) with the new instance's key, and a
`config_test` by id finds the instance; no restart needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import probes
from q4d_bridge.models import ItemState

from tests.bridge import test_arr_import
from tests.bridge.test_arr_import import KEY, FakeArr
from tests.bridge.test_e2e import digest_tree, make_file, running_bridge
from tests.bridge.test_live_apply import complete, config, in_state, item_of
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(90)
arr = test_arr_import.arr  # the stand-in's fixture: `await arr(**settings)` -> FakeArr


async def test_an_arr_instance_added_live_imports_the_next_payload(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, arr: Any
) -> None:
    sonarr: FakeArr = await arr()
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        bridge = env.bridge
        error = None
        try:
            await probes.run("arr", {"id": "tv"}, bridge.config)
        except probes.ProbeError as err:
            error = err
        assert error is not None and error.code == "not_found"

        def with_sonarr(raw: dict[str, Any]) -> None:
            raw["arr"] = {"tv": {"type": "sonarr", "url": sonarr.url, "api_key": KEY}}
            raw["destinations"]["default"] = {
                "path": raw["destinations"]["default"], "arr_import": "tv",
            }  # fmt: skip

        applied = await bridge.apply(config(env.raw, with_sonarr), confirm=False)
        assert (applied["arr"], applied["routing"], applied["restart_required"]) == (True, True, [])
        found = await probes.run("arr", {"id": "tv"}, bridge.config)
        assert found["app_name"] == "Sonarr"

        payload = env.remote / "Show.S01E01.mkv"
        make_file(payload, 2**20, seed=5)
        await complete(env, "sb1", payload)
        item = await in_state(await item_of(bridge, payload), ItemState.DONE, ItemState.FAILED)
        assert item.state is ItemState.DONE, item.detail
        assert digest_tree(env.library / "other" / payload.name) == digest_tree(payload)
        posts = [s for s in sonarr.seen if s.method == "POST"]
        assert [(p.path, p.headers["X-Api-Key"], p.body["path"]) for p in posts] == [
            ("/api/v3/command", KEY, str(env.library / "other" / payload.name))
        ]
