"""The qBittorrent state mapping, without sockets: a torrent q4d follows reads as a
download until its payload landed and passed verification, its progress runs on from
the seedbox into the transfer home, and it is complete only with the home paths."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from q4d_bridge.api import states
from q4d_bridge.api.catalog import request_key
from q4d_bridge.dispatch.requests import Request, RequestState
from q4d_bridge.models import Item, ItemState

V1 = "a" * 40
V2 = "b" * 64
ROOT = "/library/tv"
# Every state Sonarr and Radarr read as Completed: importing starts at once.
ARR_COMPLETED = {"pausedUP", "stoppedUP", "uploading", "stalledUP", "queuedUP", "forcedUP"}


def request(state: RequestState = RequestState.DOWNLOADING, **kw: Any) -> Request:
    base: dict[str, Any] = {
        "id": "r1", "created_at": 1000.0, "updated_at": 1010.0, "source": "api",
        "category": "tv", "name": "Show.S01E01.1080p", "info_hash": V1, "v1": V1, "v2": None,
        "seedbox": "sb1", "size": 1000, "state": state, "decision_id": "d1",
    }  # fmt: skip
    return Request(**{**base, **kw})


def item(state: ItemState = ItemState.TRANSFERRING, **kw: Any) -> Item:
    base: dict[str, Any] = {
        "id": "i1", "event_id": "e1", "seedbox": "sb1", "hash": V1, "name": "Show.S01E01.1080p",
        "remote_path": "/seedbox/Show.S01E01.1080p", "destination": "tv",
        "local_path": "/library/tv/Show.S01E01.1080p", "category": "tv", "tags": (),
        "type_code": None, "size": 1000, "state": state, "received_at": 1020.0,
        "updated_at": 1030.0, "request_id": "r1",
    }  # fmt: skip
    return Item(**{**base, **kw})


def shown(r: Request | None, i: Item | None) -> states.TorrentView:
    return states.view(V1, r, i, category="tv", tags=(), root=ROOT)


def test_the_hash_is_what_the_arr_apps_compute() -> None:
    # MonoTorrent's V1OrV2: the v1 hash when there is one, else the whole v2 hash
    assert request_key(request(v1=V1, v2=V2)) == V1
    assert request_key(request(v1=None, v2=V2, info_hash=V2[:40])) == V2
    hybrid = states.info(states.view(V1, request(v2=V2), None, category="", tags=(), root=ROOT))
    assert (hybrid["infohash_v1"], hybrid["infohash_v2"]) == (V1, V2)


@pytest.mark.parametrize(
    ("req", "it", "state", "progress"),
    [
        (request(RequestState.REQUESTED), None, "queuedDL", 0.0),
        (request(RequestState.ADDED, size=None), None, "metaDL", 0.0),
        (request(progress=40.0), None, "downloading", 0.2),
        (request(progress=40.0, paused=True), None, "pausedDL", 0.2),
        (request(RequestState.COMPLETED, progress=100.0), None, "queuedDL", 0.5),
        (request(RequestState.COMPLETED), item(ItemState.QUEUED), "queuedDL", 0.5),
        (request(RequestState.COMPLETED), item(ItemState.QUEUED, paused=True), "pausedDL", 0.5),
        (request(RequestState.COMPLETED), item(bytes_done=500), "downloading", 0.75),
        (
            request(RequestState.COMPLETED),
            item(ItemState.WAITING, bytes_done=200),
            "stalledDL",
            0.6,
        ),
        (
            request(RequestState.COMPLETED),
            item(ItemState.VERIFYING, bytes_done=1000),
            "downloading",
            0.999,
        ),
        (
            request(RequestState.COMPLETED),
            item(ItemState.PROCESSING, bytes_done=1000),
            "downloading",
            0.999,
        ),  # landed, its post-processing (extraction, …) still running
        (None, item(bytes_done=1000), "downloading", 0.999),
    ],
)
def test_never_complete_before_it_landed(
    req: Request | None, it: Item | None, state: str, progress: float
) -> None:
    t = shown(req, it)
    assert (t.state, t.progress) == (state, progress)
    assert t.state not in ARR_COMPLETED
    row = states.info(t)
    assert row["progress"] < 1
    assert row["amount_left"] > 0 or row["size"] == 0
    assert row["eta"] == states.ETA_UNKNOWN or 0 < row["eta"] < states.ETA_UNKNOWN


@pytest.mark.parametrize(
    ("word", "paused", "state"),
    [
        (None, False, "downloading"),  # not polled yet: what q4d asked for
        (None, True, "pausedDL"),
        ("downloading", True, "downloading"),  # started on the seedbox since
        ("stalledDL", False, "stalledDL"),  # qBittorrent
        ("queuedDL", False, "queuedDL"),
        ("checkingDL", False, "queuedDL"),
        ("pausedDL", False, "pausedDL"),
        ("stoppedDL", False, "pausedDL"),  # qBittorrent 5
        ("forcedMetaDL", False, "metaDL"),
        ("forcedDL", False, "downloading"),
        ("missingFiles", False, "stalledDL"),
        ("Queued", False, "queuedDL"),  # Deluge
        ("Paused", False, "pausedDL"),
        ("Error", False, "stalledDL"),
        ("Downloading", False, "downloading"),
        ("download_wait", False, "queuedDL"),  # Transmission
        ("check_wait", False, "queuedDL"),
        ("stopped", False, "pausedDL"),  # Transmission, rTorrent
        ("paused", False, "pausedDL"),  # rTorrent
        ("checking", False, "queuedDL"),
    ],
)
def test_on_the_seedbox_its_clients_state_shows(word: str | None, paused: bool, state: str) -> None:
    t = shown(request(progress=40.0, paused=paused, seedbox_state=word), None)
    assert (t.state, t.progress, t.phase) == (state, 0.2, "seedbox")
    # a magnet whose metadata is not in yet, however its client words it
    unsized = shown(request(size=None, seedbox_state="downloading"), None)
    assert unsized.state == "metaDL"


def test_a_seedbox_download_shows_its_rate_and_eta() -> None:
    t = shown(request(progress=40.0, rate=10.0, seedbox_state="downloading"), None)
    assert (t.state, t.dlspeed, t.eta) == ("downloading", 10, 60)  # 600 bytes left
    for still in ({"rate": 0.0}, {"seedbox_state": "stalledDL"}, {"size": None}):
        kw = {"progress": 40.0, "rate": 10.0, "seedbox_state": "downloading", **still}
        assert shown(request(**kw), None).eta == states.ETA_UNKNOWN


def test_the_transfer_home_shows_its_rate_and_eta() -> None:
    t = shown(request(RequestState.COMPLETED), item(bytes_done=250, rate=2048.4, eta=37.6))
    assert (t.dlspeed, t.eta, t.phase) == (2048, 38, "transferring")


def test_landed_is_complete_with_the_home_paths() -> None:
    done = item(ItemState.DONE, bytes_done=1000, finished_at=1100.0)
    row = states.info(shown(request(RequestState.LANDED, local_path=done.local_path), done))
    assert row["state"] == "pausedUP" and row["progress"] == 1.0 and row["eta"] == 0
    assert row["content_path"] == "/library/tv/Show.S01E01.1080p"
    assert row["save_path"] == "/library/tv" != row["content_path"]
    assert row["completion_on"] == 1100 and row["amount_left"] == 0
    # Sonarr's seed-limit check (ratio >= ratio_limit) passes: it may move, then delete
    assert row["ratio"] >= row["ratio_limit"] >= 0
    # the item pruned from the history: the request still knows where it landed
    pruned = states.info(shown(request(RequestState.LANDED, local_path=done.local_path), None))
    assert (pruned["state"], pruned["content_path"]) == ("pausedUP", done.local_path)


def test_before_its_item_the_paths_are_the_categorys_home_folder() -> None:
    row = states.info(shown(request(), None))
    assert row["save_path"] == "/library/tv"
    assert row["content_path"] == "/library/tv/Show.S01E01.1080p"
    # the item's own landing path as soon as it exists
    row = states.info(shown(request(), item(local_path="/library/tv/Season 1/Show.mkv")))
    assert (row["save_path"], row["content_path"]) == (
        "/library/tv/Season 1",
        "/library/tv/Season 1/Show.mkv",
    )


@pytest.mark.parametrize(
    ("req", "it", "message"),
    [
        (request(RequestState.FAILED, error_message="sb1: refused"), None, "sb1: refused"),
        (
            request(RequestState.FAILED),
            item(ItemState.FAILED, last_error="remote file missing"),
            "remote file missing",
        ),
        (
            request(RequestState.FAILED),
            item(ItemState.CANCELLED),
            "the transfer home was cancelled",
        ),
    ],
)
def test_a_permanent_failure_is_an_error_with_its_message(
    req: Request, it: Item | None, message: str
) -> None:
    row = states.info(shown(req, it))
    assert (row["state"], row["q4d_error"]) == ("error", message)


def test_fields_sonarr_reads_are_all_there_and_typed() -> None:
    row = states.info(shown(request(), item()))
    for key, kind in {
        "hash": str, "name": str, "size": int, "progress": float, "eta": int, "state": str,
        "category": str, "save_path": str, "content_path": str, "ratio": int,
        "ratio_limit": int, "seeding_time_limit": int, "inactive_seeding_time_limit": int,
        "last_activity": int,
    }.items():  # fmt: skip
        assert isinstance(row[key], kind), key
    props = states.properties(shown(request(), item()))
    assert {"hash", "save_path", "seeding_time"} <= props.keys()
    assert props["save_path"] == row["save_path"]


def test_filters() -> None:
    downloading = shown(request(), item())
    landed = shown(request(RequestState.LANDED), item(ItemState.DONE))
    failed = shown(request(RequestState.FAILED), None)
    paused = replace(downloading, state="pausedDL")
    every = [downloading, landed, failed, paused]

    def picked(kind: str) -> list[states.TorrentView]:
        return [t for t in every if states.matches_filter(t, kind)]

    assert picked("downloading") == [downloading, paused]
    assert picked("completed") == [landed]
    assert picked("stopped") == picked("paused") == [landed, paused]
    assert picked("errored") == [failed]
    assert picked("seeding") == []
    assert picked("all") == picked("no-such-filter") == every


def test_sorting_by_any_field_even_one_without_a_value() -> None:
    failed = states.info(shown(request(RequestState.FAILED, error_message="refused"), None))
    going = states.info(shown(request(name="B.Show"), item()))
    queued = states.info(shown(request(RequestState.REQUESTED, name="A.Show"), None))
    rows = [going, failed, queued]
    # q4d_error is None but for the failed one: compared without a TypeError (a 500)
    assert states.sort_rows(rows, "q4d_error", reverse=False) == [failed, going, queued]
    assert states.sort_rows(rows, "q4d_error", reverse=True)[-1] == failed
    assert [r["state"] for r in states.sort_rows(rows, "progress", reverse=True)] == [
        "downloading", "error", "queuedDL"
    ]  # fmt: skip
    assert states.sort_rows(rows, "no_such_field", reverse=False) == rows
    assert states.sort_rows([], "name", reverse=False) == []
