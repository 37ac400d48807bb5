"""Post-processing in Home Assistant: an item's status sensor shows the step it is in
(`processing`, `step`), what each step did (`steps`), a step's retry as its error, and
the step an item failed in, from the item payloads a bridge publishes (bridge/q4d_bridge/
mqtt/payloads.py: `step`, and `steps` as {name, state, attempts, detail, at})."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .common import async_send
from .payloads import NOW, item, item_topic

NEW = "cccccccccccccccc"
STATUS = "sensor.my_seedbox_season_pack_status"


def step(name: str, state: str, attempts: int = 0, detail: str | None = None) -> dict[str, Any]:
    return {"name": name, "state": state, "attempts": attempts, "detail": detail,
            "at": None if state == "pending" else NOW + 20}  # fmt: skip


async def send(hass: HomeAssistant, state: str, at: float, **fields: Any) -> dict[str, Any]:
    """The item as the bridge publishes it; the status sensor's state and attributes."""
    await async_send(
        hass,
        item_topic(NEW),
        item(NEW, state, name="Season.Pack", progress=100.0, updated_at=at, **fields),
    )
    sensor = hass.states.get(STATUS)
    assert sensor is not None
    return {"state": sensor.state, **sensor.attributes}


async def test_the_step_an_item_is_in_and_what_each_did(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    extracted = "3 files from 1 archive (RAR 3 volumes)"
    retrying = await send(
        hass, "processing", NOW + 20, step="arr_import",
        steps=[step("extract", "done", 1, extracted),
               step("arr_import", "retrying", 1, "Sonarr at http://127.0.0.1:8989: timed out")],
        error={"code": "error",
               "message": "arr_import: Sonarr at http://127.0.0.1:8989: timed out"},
        next_attempt_at=NOW + 25,
    )  # fmt: skip
    assert retrying["state"] == "processing"
    assert retrying["step"] == "arr_import"
    assert retrying["steps"] == {
        "extract": {"state": "done", "detail": extracted},
        "arr_import": {"state": "retrying", "detail": "Sonarr at http://127.0.0.1:8989: timed out"},
    }
    assert retrying["error_code"] == "error"
    assert retrying["error"] == "arr_import: Sonarr at http://127.0.0.1:8989: timed out"

    imported = "Sonarr: DownloadedEpisodesScan completed"
    done = await send(
        hass, "done", NOW + 30, step=None, finished_at=NOW + 30,
        steps=[step("extract", "done", 1, extracted), step("arr_import", "done", 2, imported)],
    )  # fmt: skip
    assert done["state"] == "done"
    assert "step" not in done  # every step done: none to show
    assert done["steps"] == {
        "extract": {"state": "done", "detail": extracted},
        "arr_import": {"state": "done", "detail": imported},
    }
    assert "error" not in done and "error_code" not in done


async def test_the_step_an_item_failed_in(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    corrupt = "x.rar: Unexpected end of archive"
    failed = await send(
        hass, "failed", NOW + 20, step="extract", finished_at=NOW + 20,
        steps=[step("extract", "failed", 1, corrupt), step("handoff", "pending")],
        error={"code": "post_processing", "message": f"extract: {corrupt}"},
    )  # fmt: skip
    assert failed["state"] == "failed"
    assert failed["step"] == "extract"
    assert failed["steps"] == {
        "extract": {"state": "failed", "detail": corrupt},
        "handoff": {"state": "pending", "detail": None},
    }
    assert (failed["error_code"], failed["error"]) == ("post_processing", f"extract: {corrupt}")


async def test_an_item_without_steps_has_no_step_attributes(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Items of a plan without steps (and payloads of bridges from before them)."""
    done = await send(hass, "done", NOW + 20, finished_at=NOW + 20)
    assert done["state"] == "done"
    assert "step" not in done and "steps" not in done
