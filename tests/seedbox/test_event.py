"""Each client's calling convention to a Completion, and the event payload built from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from q4d_seedbox import event
from q4d_seedbox.event import Completion, HookUsageError

from tests.seedbox.support import info_hash

H = info_hash("x")


def test_qbittorrent_all_placeholders() -> None:
    c = event.from_qbittorrent(
        [
            H.upper(),
            "Show",
            "/dl/Show",
            "tv-sonarr",
            "hd, x265,",
            "1234",
            "https://t.example.org:443/a/PASSKEY/announce",
        ]
    )
    assert c == Completion(
        client="qbittorrent",
        path="/dl/Show",
        name="Show",
        hash=H,
        category="tv-sonarr",
        tags=("hd", "x265"),
        tracker="t.example.org",  # the passkey in the announce URL never leaves the seedbox
        size=1234,
    )


def test_qbittorrent_minimal_and_empty_fields() -> None:
    c = event.from_qbittorrent(["-", "", "/dl/Movie.2020", "", "", "", ""])
    assert (c.hash, c.name, c.category, c.tags, c.tracker, c.size) == (
        None,
        "Movie.2020",
        None,
        (),
        None,
        None,
    )


@pytest.mark.parametrize("args", [[], ["h", "n"], ["h", "n", "/p", "c", "t", "1", "tr", "extra"]])
def test_qbittorrent_wrong_argument_count(args: list[str]) -> None:
    with pytest.raises(HookUsageError, match="qbittorrent"):
        event.from_qbittorrent(args)


def test_relative_path_is_refused() -> None:
    with pytest.raises(HookUsageError, match="absolute"):
        event.from_qbittorrent([H, "n", "relative/path"])


def test_bad_hash_is_dropped_with_a_warning() -> None:
    v2 = "a" * 64
    c = event.from_qbittorrent([v2, "n", "/dl/n"])
    assert c.hash is None
    assert "not a 40-hex" in c.warnings[0]


def test_rtorrent_uppercase_hash_and_rutorrent_label() -> None:
    c = event.from_rtorrent([H.upper(), "Show", "/home/me/dl/Show", "TV%20Shows", "999"])
    assert (c.client, c.hash, c.category, c.size, c.path) == (
        "rtorrent",
        H,
        "TV Shows",
        999,
        "/home/me/dl/Show",
    )


def test_deluge_content_path_is_location_plus_name() -> None:
    c = event.from_deluge([H, "Show", "/home/me/downloads/"])
    assert (c.path, c.name, c.hash) == ("/home/me/downloads/Show", "Show", H)
    with pytest.raises(HookUsageError):
        event.from_deluge([H, "Show"])


def test_transmission_environment() -> None:
    c = event.from_transmission(
        {
            "TR_TORRENT_HASH": H,
            "TR_TORRENT_NAME": "Show",
            "TR_TORRENT_DIR": "/home/me/downloads",
            "TR_TORRENT_LABELS": "tv,hd",
            "TR_TORRENT_TRACKERS": "tracker.example.org:6969,other:80",
        }
    )
    assert (c.path, c.category, c.tags, c.tracker) == (
        "/home/me/downloads/Show",
        "tv",
        ("tv", "hd"),
        "tracker.example.org",
    )
    with pytest.raises(HookUsageError):
        event.from_transmission({"TR_TORRENT_HASH": H})


def test_payload_leaves_unknowns_out_and_encodes_compact_utf8() -> None:
    c = Completion(client="deluge", path="/dl/Amélie", name="Amélie", hash=H)
    data = event.payload(c, "sb1", None, 1700000000.1234)
    assert data == {
        "v": 1,
        "event_id": f"deluge-{H}-1700000000123",
        "seedbox": "sb1",
        "client": "deluge",
        "hash": H,
        "name": "Amélie",
        "path": "/dl/Amélie",
        "tags": [],
        "completed_at": 1700000000.123,
    }
    raw = event.encode(data)
    assert "Amélie".encode() in raw and b" " not in raw
    assert json.loads(raw) == data


def test_event_id_without_a_hash_is_still_valid() -> None:
    eid = event.event_id(Completion(client="qbittorrent", path="/dl/x y", name="x y"), 1.5)
    assert eid.startswith("qbittorrent-p") and eid.endswith("-1500")
    assert all(ch.isalnum() or ch in "._:-" for ch in eid)


def test_undecodable_name_survives_as_json_escape() -> None:
    raw_name = b"caf\xe9"  # Latin-1 bytes on disk: not UTF-8
    name = os.fsdecode(raw_name)
    data = event.payload(
        Completion(client="rtorrent", path="/dl/" + name, name=name), "sb1", None, 1.0
    )
    decoded = json.loads(event.encode(data))
    assert os.fsencode(decoded["name"]) == raw_name


def test_classic_line_and_its_limits() -> None:
    c = Completion(client="qbittorrent", path="/dl/Show", name="Show", hash=H)
    assert event.classic_line(c, "T") == f"/dl/Show\t{H}\tT\n".encode()
    assert (
        event.classic_line(Completion(client="x", path="/dl/S", name="S"), None)
        == b"/dl/S\tNotUsed\t\n"
    )
    assert event.classic_line(Completion(client="x", path="/dl/a\nb", name="a\nb"), "T") is None


def test_disk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"x" * 10)
    (tmp_path / "d" / "sub" / "b").write_bytes(b"x" * 5)
    (tmp_path / "d" / "link").symlink_to(tmp_path / "d" / "a")  # not followed, not counted
    assert event.disk_size(str(tmp_path / "d")) == 15
    assert event.disk_size(str(tmp_path / "d" / "a")) == 10
    assert event.disk_size(str(tmp_path / "missing")) is None
    monkeypatch.setattr(event, "SIZE_MAX_ENTRIES", 2)
    assert event.disk_size(str(tmp_path / "d")) is None  # too big to walk: size from the client


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("udp://tracker.example.org:1337/announce", "tracker.example.org"),
        ("https://t.example.org/abc/announce?passkey=SECRET", "t.example.org"),
        ("tracker.example.org:6969", "tracker.example.org"),
        ("tracker.example.org", "tracker.example.org"),
        ("", None),
    ],
)
def test_tracker_host(value: str, host: str | None) -> None:
    assert event.tracker_host(value) == host
