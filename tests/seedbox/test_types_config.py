"""One Types.config case table, run through the bridge's loader/classifier and the
seedbox's 3.8 re-implementation: both must give the same code (or the same error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import rules as bridge
from q4d_bridge.models import CompletionEvent
from q4d_seedbox import types_config as seedbox
from q4d_seedbox.event import Completion

HASH = "0123456789abcdef0123456789abcdef01234567"

Q4D_SAMPLE = """\
# Q4D's sample, tier 1 first, tier 2 after
LABEL    IS        sonarr   T
LABEL    IS        radarr   M
TRACKER  CONTAINS  hatc     A
KEY      CONTAINS  eopardy  J  T      # Jeopardy refines TV
KEY      CONTAINS  2024     N  M
"""

# (id, Types.config text, event fields, default type, expected code)
CASES: list[tuple[str, str, dict[str, Any], str | None, str | None]] = [
    ("tier1 label", Q4D_SAMPLE, {"category": "sonarr"}, "V", "T"),
    ("tier2 refines", Q4D_SAMPLE, {"category": "sonarr", "path": "/dl/Jeopardy.2024"}, "V", "J"),
    ("tier2 needs its scope", Q4D_SAMPLE, {"category": "radarr", "path": "/dl/Jeopardy"}, "V", "M"),
    ("tier2 other scope", Q4D_SAMPLE, {"category": "radarr", "path": "/dl/Film.2024"}, "V", "N"),
    ("first tier1 wins", Q4D_SAMPLE, {"category": "sonarr", "tracker": "hatchery.cc"}, "V", "T"),
    ("tracker contains", Q4D_SAMPLE, {"tracker": "tracker.hatchery.cc"}, "V", "A"),
    ("no match gives default", Q4D_SAMPLE, {"category": "other"}, "V", "V"),
    ("no match no default", Q4D_SAMPLE, {"category": "other"}, None, None),
    ("is is exact", "LABEL IS tv T", {"category": "tv-sonarr"}, None, None),
    ("case matters in values", "LABEL IS TV T", {"category": "tv"}, None, None),
    ("keywords any case", "label is tv T\ntracker contains x Y", {"category": "tv"}, None, "T"),
    ("not on missing label", "LABEL NOT sonarr X", {}, None, "X"),
    ("not on equal", "LABEL NOT sonarr X", {"category": "sonarr"}, None, None),
    ("contains empty label", "LABEL CONTAINS a X", {}, None, None),
    ("hash is", f"HASH IS {HASH} H", {"hash": HASH}, None, "H"),
    ("hash missing", f"HASH NOT {HASH} H", {}, None, "H"),
    ("key is the path", "KEY CONTAINS downloads/Show K", {"name": "Other"}, None, "K"),
    ("key not the name", "KEY IS Show.S01E01.mkv K", {"name": "Show.S01E01.mkv"}, None, None),
    ("path field", "PATH CONTAINS /home/me/ P", {}, None, "P"),
    ("tier2 chain", "LABEL IS a A\nLABEL IS a B A\nLABEL IS a C B", {"category": "a"}, None, "C"),
    ("tier2 before tier1 skipped", "LABEL IS a B A\nLABEL IS a A", {"category": "a"}, None, "A"),
    ("later tier1 ignored once coded", "LABEL IS a A\nLABEL IS a Z", {"category": "a"}, None, "A"),
    ("comment only", "# nothing\n\n   # more", {"category": "a"}, "V", "V"),
    ("trailing comment", "LABEL IS a A # the A code", {"category": "a"}, None, "A"),
    ("unicode value", "KEY CONTAINS Amélie M", {"path": "/dl/Amélie.2001"}, None, "M"),
    ("quotes are literal", 'LABEL IS "tv" T', {"category": "tv"}, None, None),
]

ERRORS = [
    ("too few columns", "LABEL IS tv"),
    ("too many columns", "LABEL IS tv T X Y"),
    ("unknown field", "NAME IS tv T"),
    ("unknown conditional", "LABEL MATCHES tv T"),
    ("bad line after good", "LABEL IS tv T\nKEY LIKE x Y"),
    ("a # starts a comment, even inside a value", "LABEL IS a#b A"),
]


def _events(fields: dict[str, Any]) -> tuple[CompletionEvent, Completion]:
    path = fields.pop("path", "/home/me/downloads/Show.S01E01.mkv")
    name = fields.pop("name", "Show.S01E01.mkv")
    tracker = fields.pop("tracker", None)
    category = fields.pop("category", None)
    info_hash = fields.pop("hash", None)
    assert not fields
    bridge_event = CompletionEvent(
        event_id="e1",
        seedbox="sb1",
        path=path,
        name=name,
        hash=info_hash,
        category=category,
        tracker=tracker,
    )
    completion = Completion(
        client="qbittorrent",
        path=path,
        name=name,
        hash=info_hash,
        category=category,
        tracker=tracker,
    )
    return bridge_event, completion


@pytest.mark.parametrize(
    ("text", "fields", "default", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_same_code_as_the_bridge(
    tmp_path: Path, text: str, fields: dict[str, Any], default: str | None, expected: str | None
) -> None:
    path = tmp_path / "Types.config"
    path.write_text(text, encoding="utf-8")
    bridge_event, completion = _events(dict(fields))
    from_bridge = bridge.classify(bridge_event, bridge.load_types_config(path), default)
    from_seedbox = seedbox.classify(completion, seedbox.load_types_config(path), default)
    assert from_bridge == from_seedbox == expected


@pytest.mark.parametrize("text", [e[1] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_same_errors_as_the_bridge(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Types.config"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(bridge.TypesConfigError) as from_bridge:
        bridge.load_types_config(path)
    with pytest.raises(seedbox.TypesConfigError) as from_seedbox:
        seedbox.load_types_config(path)
    assert str(from_bridge.value) == str(from_seedbox.value)


def test_same_rules_parsed(tmp_path: Path) -> None:
    path = tmp_path / "Types.config"
    path.write_text(Q4D_SAMPLE)
    ours = [(r.field, r.op, r.value, r.code, r.scope) for r in seedbox.load_types_config(path)]
    theirs = [(r.field, r.op, r.value, r.code, r.scope) for r in bridge.load_types_config(path)]
    assert ours == theirs
    assert len(ours) == 5
