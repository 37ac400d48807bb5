"""Rules: conditions, Q4D Types.config tier semantics, and path safety."""

from __future__ import annotations

from pathlib import Path

import pytest
from q4d_bridge.models import CompletionEvent
from q4d_bridge.rules import (
    Condition,
    Routing,
    Rule,
    TypesConfigError,
    UnsafePathError,
    check_name,
    check_remote_path,
    classify,
    ensure_inside,
    parse_types_config,
    resolve,
    safe_join,
)


def event(**kw: object) -> CompletionEvent:
    base: dict[str, object] = {
        "event_id": "e1",
        "seedbox": "sb1",
        "path": "/home/u/done/Some.Show.S01E01.mkv",
        "name": "Some.Show.S01E01.mkv",
    }
    base.update(kw)
    return CompletionEvent(**base)  # type: ignore[arg-type]


ROUTING = Routing(
    rules=(
        Rule("tv", (Condition("category", "is", "sonarr"),)),
        Rule("movies", (Condition("tags", "contains", "radarr"), Condition("size", "gt", 100))),
        Rule("music", (Condition("tracker", "regex", r"music\.example\.(org|net)"),)),
        Rule("other", (Condition("name", "glob", "*.iso"), Condition("category", "not", "keep"))),
    ),
    destinations={
        "tv": Path("/lib/tv"),
        "movies": Path("/lib/movies"),
        "music": Path("/lib/music"),
        "other": Path("/lib/other"),
        "jeopardy": Path("/lib/jeopardy"),
        "default": Path("/lib/default"),
    },
    type_codes={"J": "jeopardy", "T": "tv"},
    default_destination="default",
)


@pytest.mark.parametrize(
    ("fields", "destination"),
    [
        ({"category": "sonarr"}, "tv"),
        ({"category": "Sonarr"}, "default"),  # "is" is exact
        ({"tags": ("x", "radarr-4k"), "size": 101}, "movies"),
        ({"tags": ("radarr",), "size": 100}, "default"),  # size must be > 100
        ({"tracker": "https://music.example.net/announce"}, "music"),
        ({"name": "disc.iso", "path": "/d/disc.iso"}, "other"),
        ({"name": "disc.iso", "path": "/d/disc.iso", "category": "keep"}, "default"),
        ({"type_code": "J"}, "jeopardy"),  # no rule matched: the type code decides
        ({"type_code": "Z"}, "default"),
    ],
)
def test_first_matching_rule_wins(fields: dict[str, object], destination: str) -> None:
    resolution = resolve(event(**fields), ROUTING)
    assert resolution.destination == destination
    assert resolution.local_path.parent == ROUTING.destinations[destination]


def test_tags_not_means_no_tag_equals() -> None:
    cond = Condition("tags", "not", "DONE")
    assert cond.matches(event(tags=("QUEUED",)), None)
    assert not cond.matches(event(tags=("QUEUED", "DONE")), None)


def test_missing_field_only_matches_not() -> None:
    assert Condition("category", "not", "tv").matches(event(), None)
    assert not Condition("category", "contains", "").matches(event(), None)


def test_subdir_template_is_sanitised() -> None:
    routing = Routing(
        rules=(Rule("tv", (), subdir="{seedbox}/{category}"),),
        destinations={"tv": Path("/lib/tv")},
        type_codes={},
        default_destination="tv",
    )
    res = resolve(event(category="sonarr"), routing)
    assert res.local_path == Path("/lib/tv/sb1/sonarr/Some.Show.S01E01.mkv")
    with pytest.raises(UnsafePathError):
        resolve(event(category=".."), routing)
    with pytest.raises(UnsafePathError):
        resolve(event(category="a/../../etc"), routing)


# --- Types.config ---------------------------------------------------------------------

Q4D_SAMPLE = """
# Q4D's own sample, unchanged (FIELD CONDITIONAL VALUE TYPE SCOPE)
LABEL    IS        sonarr   T
LABEL    IS        radarr   M
TRACKER  CONTAINS  hatc     A
KEY      CONTAINS  eopardy  J   T     # already TV: Jeopardy gets its own folder
KEY      CONTAINS  2024     N   M
LABEL    NOT       keep     B   N
"""


def test_types_config_tiers() -> None:
    rules = parse_types_config(Q4D_SAMPLE)
    assert len(rules) == 6
    assert classify(event(category="sonarr"), rules, "V") == "T"
    assert classify(event(category="sonarr", path="/d/Jeopardy.2024.mkv"), rules, "V") == "J"
    # tier 1: first match wins, later tier-1 rules do not overwrite
    assert classify(event(category="sonarr", tracker="hatc.example"), rules, "V") == "T"
    assert classify(event(tracker="https://hatchery/announce"), rules, "V") == "A"
    # tier 2 chains: M -> N -> B
    assert classify(event(category="radarr", path="/d/Film.2024.mkv"), rules, "V") == "B"
    assert classify(event(), rules, "V") == "V"


def test_types_config_drives_destination_through_type_codes() -> None:
    routing = Routing(
        rules=(),
        destinations={"tv": Path("/lib/tv"), "jeopardy": Path("/lib/j"), "default": Path("/d")},
        type_codes={"T": "tv", "J": "jeopardy"},
        default_destination="default",
        types_rules=parse_types_config(Q4D_SAMPLE),
        default_type="V",
    )
    assert resolve(event(category="sonarr"), routing).destination == "tv"
    res = resolve(event(category="sonarr", path="/x/Jeopardy.S01.mkv"), routing)
    assert (res.type_code, res.destination) == ("J", "jeopardy")
    # a code sent by the seedbox wins over the bridge's own Types.config
    assert resolve(event(category="sonarr", type_code="J"), routing).destination == "jeopardy"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("LABEL IS", "expected FIELD CONDITIONAL VALUE TYPE"),
        ("COLOUR IS red T", "unknown field"),
        ("LABEL LIKE tv T", "unknown conditional"),
        ("LABEL IS a b c d e", "expected FIELD CONDITIONAL VALUE TYPE"),
    ],
)
def test_types_config_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TypesConfigError, match=rf"Types.config:1: {message}"):
        parse_types_config(text)


# --- path safety ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "nul\x00byte", "new\nline", "tab\there", "esc\x1b[31m", "x" * 256],
)
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(UnsafePathError):
        check_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "Amélie (2001) 東京 🎬.mkv",
        "a'b\"c;d$(e)`f`!g",
        "back\\slash",
        "-rf",
        "é" * 127,
        "x" * 255,
        ".hidden",
    ],
)
def test_check_name_allows_hostile_but_harmless(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "path",
    ["relative/x", "/", "/a/../etc/passwd", "/a/./b", "//a", "/a/b\n", "/home/other/x", "/home/u"],
)
def test_remote_path_refused(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_remote_path(path, ["/home/u/"])


def test_remote_path_inside_roots() -> None:
    assert check_remote_path("/home/u/done/x/", ["/home/u"]) == "/home/u/done/x"
    assert check_remote_path("/anything/x") == "/anything/x"


def test_safe_join_and_symlinks(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a", "b") == tmp_path / "a" / "b"
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "..", "x")
    (tmp_path / "link").symlink_to("/etc")
    ensure_inside(tmp_path, tmp_path / "a" / "b")
    with pytest.raises(UnsafePathError):
        ensure_inside(tmp_path, safe_join(tmp_path, "link", "passwd"))
