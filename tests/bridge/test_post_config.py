"""Post-processing in the config: a destination's steps, a rule's keys over them, ignore
rules, the `arr:` and `home_clients:` instances, and the plan fixed on an item (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from q4d_bridge.config.loader import parse_config
from q4d_bridge.models import CompletionEvent
from q4d_bridge.postprocess.plan import (
    ArrImportPlan,
    CleanupPlan,
    ExtractPlan,
    HandoffPlan,
    Ownership,
    PostPlan,
)
from q4d_bridge.rules import resolve

from tests.helpers.configs import errors_of

SONARR = {"type": "sonarr", "url": "http://127.0.0.1:8989/", "api_key": "0123456789abcdef"}
HOME = {"type": "qbittorrent", "url": "http://127.0.0.1:8080", "password_file": ""}


def event(category: str, name: str = "Show.S01E01") -> CompletionEvent:
    return CompletionEvent("e1", "sb1", f"/dl/{name}", name, category=category)


def with_steps(raw: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    secret = tmp_path / "home.secret"
    secret.write_text("hunter22\n")
    raw["arr"] = {"sonarr": SONARR}
    raw["home_clients"] = {"home": {**HOME, "password_file": str(secret)}}
    raw["destinations"]["tv"] = {
        "path": raw["destinations"]["tv"], "owner": 1000, "group": "media",
        "file_mode": "0664", "extract": True, "arr_import": "sonarr",
    }  # fmt: skip
    raw["rules"] = [
        {"match": [{"field": "category", "is": "keep"}], "ignore": True},
        {"destination": "tv", "match": [{"field": "category", "is": "anime"}],
         "exclude": ["*.nfo", "Sample/"], "extract": {"keep_archives": False},
         "seedbox_cleanup": {"ratio": 2, "seeding_time": "7d"}},
        {"destination": "tv", "match": [{"field": "category", "is": "tv"}],
         "handoff": {"client": "home", "tags": ["q4d"], "remove_from_seedbox": True},
         "arr_import": {"instance": "sonarr", "import_mode": "Copy"}},
    ]  # fmt: skip
    return raw


def test_a_rule_sets_its_keys_over_its_destination_s(raw: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(with_steps(raw, tmp_path))
    anime = resolve(event("anime"), config.routing)
    assert anime.destination == "tv" and not anime.ignore
    assert anime.post == PostPlan(
        exclude=("*.nfo", "Sample/"),
        ownership=Ownership(owner=1000, group="media", file_mode=0o664),
        extract=ExtractPlan(keep_archives=False),
        arr_import=ArrImportPlan("sonarr"),
        cleanup=CleanupPlan(ratio=2.0, seeding_time=7 * 86400.0),
    )
    assert anime.post.steps() == ("extract", "arr_import")  # a goal waits after done
    tv = resolve(event("tv"), config.routing).post
    assert tv.steps() == ("extract", "handoff", "arr_import")
    assert tv.handoff == HandoffPlan("home", tags=("q4d",), remove_from_seedbox=True)
    assert config.home_clients["home"].password == "hunter22"
    assert "hunter22" not in repr(config.home_clients) and "0123" not in repr(config.arr)
    assert config.arr["sonarr"].url == "http://127.0.0.1:8989"


def test_no_rule_matched_takes_the_destination_s_plan(raw: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(with_steps(raw, tmp_path))
    other = resolve(event("misc"), config.routing)
    assert other.destination == "default" and other.post == PostPlan()
    typed = resolve(CompletionEvent("e", "sb1", "/dl/x", "x", type_code="T"), config.routing)
    assert typed.destination == "tv" and typed.post.arr_import == ArrImportPlan("sonarr")


def test_an_ignore_rule_needs_no_destination(raw: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(with_steps(raw, tmp_path))
    assert resolve(event("keep"), config.routing).ignore


def test_bad_post_processing_keys_are_named(raw: dict[str, Any], tmp_path: Path) -> None:
    raw = with_steps(raw, tmp_path)
    raw["rules"] += [
        {"match": []},
        {"destination": "tv", "arr_import": "radarr", "handoff": "nas"},
        {"destination": "tv", "seedbox_cleanup": {"delete_data": False}},
        {"destination": "tv", "owner": "bad name"},
        {"destination": "tv", "exclude": ["../x"]},
        {"destination": "movies", "handoff": "home", "extract": {"keep_archives": False},
         "arr_import": {"instance": "sonarr", "import_mode": "Move"}, "exclude": ["*.nfo"]},
    ]  # fmt: skip
    raw["arr"]["bad"] = {"type": "lidarr", "url": "ftp://x", "api_key": "short"}
    errors = errors_of(raw)
    assert "arr.bad.api_key: must be at least 8 characters" in errors
    assert any(e.startswith("arr.bad.type:") for e in errors)
    assert any(e.startswith("arr.bad.url: must be an http(s) URL") for e in errors)
    assert (
        "rules[5].seedbox_cleanup: give a ratio, a seeding_time or both (or: never, at_once)"
        in errors
    )
    del raw["rules"][5]
    assert any(e.startswith("rules[5].owner: expected a user or group") for e in errors_of(raw))
    del raw["rules"][5]
    assert any(e.startswith("rules[5].exclude[0]: patterns are rel") for e in errors_of(raw))
    del raw["arr"]["bad"]
    del raw["rules"][5]
    errors = errors_of(raw)
    assert errors == [
        "rules[3].destination: required (or ignore: true)",
        "rules[4].arr_import: 'radarr' is not under arr",
        "rules[4].handoff: 'nas' is not under home_clients",
        "rules[5].extract.keep_archives: must stay true with a hand-off (the home client's "
        "recheck reads the archives)",
        "rules[5].exclude: a hand-off needs every file of the torrent (the home client "
        "rechecks them all); drop exclude or the hand-off",
        "rules[5].arr_import.import_mode: Move would take the files the home client seeds; "
        "use Copy (a hardlink where it can)",
    ]
    # the destination's arr_import (mode unset) under a rule's hand-off imports by Copy
    raw["rules"] = [{"destination": "tv", "match": [], "handoff": "home"}]
    plan = resolve(event("any"), parse_config(raw).routing).post
    assert plan.steps() == ("extract", "handoff", "arr_import")
    assert (plan.arr_import, plan.import_mode()) == (ArrImportPlan("sonarr"), "Copy")
    # an Auto asked for under a hand-off is refused, with why
    raw["rules"][0]["arr_import"] = {"instance": "sonarr", "import_mode": "Auto"}
    assert errors_of(raw) == [
        "rules[0].arr_import.import_mode: Auto moves the files the home client seeds when "
        "Sonarr/Radarr finds no seedbox torrent to leave them for (the hand-off may have "
        "removed it); use Copy (a hardlink where it can)",
    ]
    # without a hand-off an unset mode is the apps' own default, Auto
    del raw["rules"][0]["handoff"]
    del raw["rules"][0]["arr_import"]
    assert resolve(event("any"), parse_config(raw).routing).post.import_mode() == "Auto"


def test_the_plan_an_item_keeps_survives_json(raw: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(with_steps(raw, tmp_path))
    for category in ("anime", "tv", "misc"):
        plan = resolve(event(category), config.routing).post
        assert PostPlan.from_json(plan.to_json()) == plan
    assert PostPlan.from_json(None) == PostPlan()
