"""One Types.config case table, run through the bridge's loader/classifier, the seedbox's
3.8 re-implementation and Q4D's own reading of the file restated in bash: the first two
must give the same code (or the same error), and bash the same code except where the
table names a deliberate difference."""

from __future__ import annotations

import os
import shutil
import subprocess
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

# The rule lines of the Types.config Q4D ships (Q4D/Types.config, Queue4Download at
# 206753b), verbatim: `""` for tier 1 and one code in quotes. Its comment lines quote too.
SHIPPED = """\
# LABEL IS sonarr "S" ""
# KEY CONTAINS "eopardy" "J" "T"
LABEL IS sonarr T ""
TRACKER CONTAINS hatc "A" ""
TRACKER CONTAINS tackove B ""
TRACKER CONTAINS emp V ""
TRACKER CONTAINS ageddon B ""
KEY CONTAINS eopardy J T
KEY CONTAINS 2024 N M
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
    # Q4D's shipped file: all seven rules fire, with the sample's quotes taken off.
    ("shipped: label sonarr", SHIPPED, {"category": "sonarr"}, "V", "T"),
    ("shipped: quoted code", SHIPPED, {"tracker": "tracker.whatcd.net/announce.php"}, "V", "A"),
    ("shipped: first tier1 wins", SHIPPED, {"category": "sonarr", "tracker": "whatcd"}, "V", "T"),
    ("shipped: tier2 on T", SHIPPED, {"category": "sonarr", "path": "/dl/Jeopardy.2022"}, "V", "J"),
    ("shipped: tier2 needs T", SHIPPED, {"path": "/dl/Jeopardy.2022.09.13.720p"}, "V", "V"),
    ("shipped: tracker B", SHIPPED, {"tracker": "tracker.stackoverflow.example"}, "V", "B"),
    ("shipped: tracker V", SHIPPED, {"tracker": "tracker.emp.example"}, None, "V"),
    ("shipped: N refines only M", SHIPPED, {"path": "/dl/Film.2024.mkv"}, None, None),
    # Double quotes: a quoted column is what is inside them, `""` is empty.
    ("quoted columns", 'LABEL IS "sonarr" "T" ""', {"category": "sonarr"}, None, "T"),
    (
        "quoted empty scope is tier1",
        'LABEL IS a A ""\nLABEL IS a Z ""',
        {"category": "a"},
        None,
        "A",
    ),
    (
        "quoted scope",
        'LABEL IS a A\nKEY CONTAINS "x" "B" "A"',
        {"category": "a", "path": "/d/x"},
        None,
        "B",
    ),
    ("quoted empty value, no label", 'LABEL IS "" N', {}, None, "N"),
    ("quoted empty value, a label", 'LABEL IS "" N', {"category": "tv"}, None, None),
    ("not the empty value", 'LABEL NOT "" L', {"category": "tv"}, None, "L"),
    ("contains the empty value", 'TRACKER CONTAINS "" C', {}, None, "C"),
    ("tabs and quotes", 'LABEL\tIS\t"tv"\t"T"\t""', {"category": "tv"}, None, "T"),
    ("single quotes are characters", "LABEL IS 'tv' T", {"category": "'tv'"}, None, "T"),
    ("single quotes stay", "LABEL IS 'tv' T", {"category": "tv"}, None, None),
    ("apostrophe", "KEY CONTAINS Director's D", {"path": "/dl/Director's.Cut"}, None, "D"),
]

# Where Q4D's reading gives another code, on purpose (docs/migrating-from-q4d.md):
# Queue4Download.sh matches `case $comptype in "IS")`, so a lowercase keyword is no rule;
# it drops every line holding a `#` (`grep -Ev '(#.*$)|(^$)'`), trailing comments too,
# so the sample's Jeopardy rule never runs there.
Q4D_DIFFERS: dict[str, str | None] = {
    "keywords any case": None,
    "trailing comment": None,
    "tier2 refines": "T",
}

# (id, Types.config text, what the message says)
ERRORS = [
    ("too few columns", "LABEL IS tv", "expected FIELD CONDITIONAL VALUE TYPE"),
    ("too many columns", "LABEL IS tv T X Y", "expected FIELD CONDITIONAL VALUE TYPE"),
    ("unknown field", "NAME IS tv T", "unknown field 'NAME'"),
    ("unknown conditional", "LABEL MATCHES tv T", "unknown conditional 'MATCHES'"),
    ("bad line after good", "LABEL IS tv T\nKEY LIKE x Y", "Types.config:2: unknown conditional"),
    ("a # starts a comment, even inside a value", "LABEL IS a#b A", "expected FIELD"),
    ("unbalanced quote", 'LABEL IS "sonarr T', "unbalanced double quote"),
    ("unbalanced closing quote", 'LABEL IS sonarr" T ""', "unbalanced double quote"),
    ("quoted value with a space", 'KEY CONTAINS "Some Show" S', "cannot hold whitespace"),
    ("quote inside a column", 'LABEL IS so"na"rr T', "must enclose a whole column"),
    ("quote after a quoted column", 'LABEL IS "tv" "T"x', "must enclose a whole column"),
    ("empty type", 'LABEL IS sonarr ""', "TYPE is empty"),
    ("empty field", '"" IS sonarr T', "unknown field ''"),
]

# Q4D's SetType, restated: the hook's own grep and `read -r` over Types.config, Q4D v2's
# tier test and comparisons, and the double quotes of Q4D's sample taken off as it means
# them. Field values come in through the environment, so no value is ever shell code.
Q4D_SETTYPE = r"""
set -u
declare -A payload=([KEY]="$Q4D_KEY" [HASH]="$Q4D_HASH" [LABEL]="$Q4D_LABEL"
                    [TRACKER]="$Q4D_TRACKER" [PATH]="$Q4D_PATH")
unquote() {
    local v=$1
    if [[ ${#v} -ge 2 && $v == \"*\" ]]; then v=${v:1:${#v}-2}; fi
    printf '%s' "$v"
}
type=""
while read -r field comptype value code assigned
do
    [[ -n $field && $type == "$(unquote "$assigned")" ]] || continue
    data=${payload[$(unquote "$field")]-}
    value=$(unquote "$value")
    case $(unquote "$comptype") in
        IS) [[ $data == "$value" ]] ;;
        CONTAINS) [[ $data == *"$value"* ]] ;;
        NOT) [[ $data != "$value" ]] ;;
        *) false ;;
    esac && type=$(unquote "$code")
done < <(grep -Ev '(#.*$)|(^$)' "$1")
printf '%s' "${type:-$Q4D_DEFAULT}"
"""


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


@pytest.mark.parametrize(
    ("case_id", "text", "fields", "default", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_same_code_as_q4d_in_bash(
    tmp_path: Path,
    case_id: str,
    text: str,
    fields: dict[str, Any],
    default: str | None,
    expected: str | None,
) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script, types = tmp_path / "settype.sh", tmp_path / "Types.config"
    script.write_text(Q4D_SETTYPE, encoding="utf-8")
    types.write_text(text, encoding="utf-8")
    bridge_event, _ = _events(dict(fields))
    env = {
        "PATH": os.environ["PATH"],
        "LC_ALL": "C.UTF-8",
        # Q4D's CheckFields makes the existing payload path the KEY, as the bridge does.
        "Q4D_KEY": bridge_event.path,
        "Q4D_PATH": bridge_event.path,
        "Q4D_HASH": bridge_event.hash or "",
        "Q4D_LABEL": bridge_event.category or "",
        "Q4D_TRACKER": bridge_event.tracker or "",
        "Q4D_DEFAULT": default or "",
    }
    done = subprocess.run(
        [bash, str(script), str(types)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,  # the exit status is asserted with stderr, which says what went wrong
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (done.stdout or None) == Q4D_DIFFERS.get(case_id, expected)


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_same_errors_as_the_bridge(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "Types.config"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(bridge.TypesConfigError) as from_bridge:
        bridge.load_types_config(path)
    with pytest.raises(seedbox.TypesConfigError) as from_seedbox:
        seedbox.load_types_config(path)
    assert str(from_bridge.value) == str(from_seedbox.value)
    assert message in str(from_bridge.value)


@pytest.mark.parametrize(("text", "count"), [(Q4D_SAMPLE, 5), (SHIPPED, 7)])
def test_same_rules_parsed(tmp_path: Path, text: str, count: int) -> None:
    path = tmp_path / "Types.config"
    path.write_text(text)
    ours = [(r.field, r.op, r.value, r.code, r.scope) for r in seedbox.load_types_config(path)]
    theirs = [(r.field, r.op, r.value, r.code, r.scope) for r in bridge.load_types_config(path)]
    assert ours == theirs
    assert len(ours) == count


def test_shipped_file_reads_as_it_means() -> None:
    assert [(r.code, r.scope) for r in bridge.parse_types_config(SHIPPED)] == [
        ("T", None), ("A", None), ("B", None), ("V", None), ("B", None), ("J", "T"), ("N", "M")
    ]  # fmt: skip
