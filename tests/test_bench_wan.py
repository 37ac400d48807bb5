"""bench/wan.py's profiles and summary: the payload every run moves, which options a
profile sets, and which ratios get a PASS/MISS (no timing here: figures come from the
benchmark itself)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import wan
from wan_profiles import KIB, MIB, PROFILES, Scenario, small_file_layout
from wan_report import Row, summarize, table


def test_small_file_tree_is_the_same_every_run_and_fits_the_scenario() -> None:
    layout = small_file_layout(2000, 4, 128, 19)
    assert layout == small_file_layout(2000, 4, 128, 19)
    assert layout != small_file_layout(2000, 4, 128, 20)
    sizes = [size for _, size in layout]
    assert len(layout) == len({rel for rel, _ in layout}) == 2000
    assert min(sizes) >= 4 * KIB
    assert max(sizes) <= 128 * KIB
    assert 120 * MIB < sum(sizes) < 140 * MIB
    assert {rel.count("/") for rel, _ in layout} == {3}  # three folder levels, then the file


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"rate_mbit": [1000.0], "delay_ms": 40.0, "loss_pct": 0.0, "mtu": 16384}),
        (
            ["--profile", "lossy"],
            {"rate_mbit": [200.0, 1000.0], "delay_ms": 80.0, "loss_pct": 0.1, "mtu": 1500,
             "file_mib": 256, "dir_files": 50, "streams": [1, 4, 8, 16]},
        ),
        (
            ["--profile", "lossy", "--rate-mbit", "200", "--file-mib", "64"],
            {"rate_mbit": [200.0], "file_mib": 64, "loss_pct": 0.1},
        ),
        (["--profile", "small-files"], {"delay_ms": 40.0, "small_files": 2000}),
    ],
)  # fmt: skip
def test_a_profile_sets_defaults_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: dict[str, object]
) -> None:
    monkeypatch.setattr(sys, "argv", ["wan.py", *argv])
    args, profile = wan.parse_args()
    assert profile.name == (argv[1] if argv else "default")
    assert {key: getattr(args, key) for key in expected} == expected


def summary_lines(profile: str, capsys: pytest.CaptureFixture[str], q4d: float) -> str:
    link = {"goodput_mb_s": {"1": 10.0, "8": 20.0}, "payload_mb_s": {"s": {"8": 16.0}}}
    rows = [
        Row("s", "lftp tuned", "peer", 12.0, 1.0, ok=True),
        Row("s", "q4d sftp", "q4d", q4d, 1.0, ok=True, files_s=2000 / 1.0),
        Row("s", "q4d lftp", "q4d", 99.0, 1.0, ok=False, note="content differs"),
    ]
    summary = summarize(link, rows, [Scenario("s", Path("/x"), 1, 2000)], PROFILES[profile])
    assert summary["s"]["best_engine"] == "q4d sftp"  # a failed row never counts
    return capsys.readouterr().out


def test_lossy_rows_get_a_verdict_against_link_and_peer(capsys: pytest.CaptureFixture[str]) -> None:
    out = summary_lines("lossy", capsys, 18.0)  # 0.90 x link, 1.50 x peer
    assert "vs link 0.90 PASS" in out
    assert "vs best peer (lftp tuned, 12.0) 1.50 PASS" in out
    assert "PASS" not in out.split("vs raw TCP")[1].split("vs best peer")[0]
    out = summary_lines("lossy", capsys, 17.0)
    assert "vs link 0.85 MISS" in out
    assert "1.42 MISS" in out


def test_small_files_rows_get_a_verdict_against_raw_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    out = summary_lines("small-files", capsys, 12.8)  # 0.80 x raw TCP, same bytes
    assert "2000.0 files/s" in out
    assert "x link) 0.80 PASS" in out
    assert "vs link 0.64  " in out  # no target there: no verdict
    assert "MISS" not in summary_lines("small-files", capsys, 13.0)
    assert "x link) 0.79 MISS" in summary_lines("small-files", capsys, 12.6)


def test_the_table_shows_the_adaptation_and_the_loss_the_link_dealt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    link = {
        "rtt_ms": {"median_ms": 160.4},
        "goodput_mb_s": {"16": 40.0},
        "loss_pct": 0.1,
        "delay_line": {"directions": [{"lost": 10, "packets": 9990}, {"lost": 1, "packets": 999}]},
    }
    rows = [
        Row("s", "q4d sftp", "q4d", 36.0, 1.0, ok=True, adaptation={"connections": 12}),
        Row("s", "q4d lftp", "q4d", 30.0, 1.0, ok=True),
    ]
    table(link, rows, PROFILES["lossy"])
    out = capsys.readouterr().out
    assert out.count("adaptation") == 1
    assert 'adaptation {"connections": 12}' in out
    assert "random loss: 11 of 11,000 packets (0.100%), asked 0.1 % each way" in out
