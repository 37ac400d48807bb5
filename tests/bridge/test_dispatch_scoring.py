"""Dispatch scoring, pure: a table of clients and what each scores, with its reason."""

from __future__ import annotations

import pytest
from q4d_bridge.config.model import ClientDispatch, DispatchConfig
from q4d_bridge.dispatch.scoring import (
    GIB,
    MIB,
    ClientSnapshot,
    Reason,
    choose,
    human_size,
    score_client,
)

WEIGHTS = DispatchConfig()  # the dispatcher seed's: disk 1.0, downloads 2.0, bandwidth 0.1


def snap(
    seedbox: str = "a",
    *,
    free: int | None = 1000 * GIB,
    active: int = 0,
    rate: int = 0,
    pending: int = 0,
    reachable: bool = True,
    error: str | None = None,
    **settings: object,
) -> ClientSnapshot:
    return ClientSnapshot(
        seedbox=seedbox,
        reachable=reachable,
        error=error,
        free_space=free,
        active_downloads=active,
        download_rate=rate,
        pending_bytes=pending,
        settings=ClientDispatch(**settings),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("snapshot", "size", "score", "reason"),
    [
        # 1000 GiB free - 10 GiB new = 990 GiB: 9.9 per 100 GiB
        (snap(), 10 * GIB, 9.9, Reason.ELIGIBLE),
        # each active download costs 2.0
        (snap(active=3), 10 * GIB, 3.9, Reason.ELIGIBLE),
        # each MiB/s being downloaded costs 0.1
        (snap(rate=20 * MIB), 10 * GIB, 7.9, Reason.ELIGIBLE),
        # what queued downloads still need counts as used
        (snap(pending=490 * GIB), 10 * GIB, 5.0, Reason.ELIGIBLE),
        # the per-client weight multiplies the whole score
        (snap(weight=2.0), 10 * GIB, 19.8, Reason.ELIGIBLE),
        # below min_free after this torrent: scored, but not eligible
        (snap(free=60 * GIB), 20 * GIB, 0.4, Reason.BELOW_MIN_FREE),
        (snap(free=60 * GIB, min_free=10 * GIB), 20 * GIB, 0.4, Reason.ELIGIBLE),
        (snap(active=50), 10 * GIB, -90.1, Reason.MAX_DOWNLOADS),
        (snap(active=5, max_downloads=6), 10 * GIB, -0.1, Reason.ELIGIBLE),
        # below min_score (-1.0)
        (snap(free=100 * GIB, active=1, min_free=0), 10 * GIB, -1.1, Reason.LOW_SCORE),
        # free space unknown (rTorrent over SCGI): only downloads and bandwidth count
        (snap(free=None, active=0), 10 * GIB, 0.0, Reason.ELIGIBLE),
        (snap(reachable=False, error="connection refused"), 10 * GIB, None, Reason.UNREACHABLE),
        (snap(enabled=False), 10 * GIB, None, Reason.DISABLED),
    ],
)
def test_score_table(
    snapshot: ClientSnapshot, size: int, score: float | None, reason: Reason
) -> None:
    result = score_client(snapshot, WEIGHTS, size)
    assert result.reason is reason
    assert result.score == (None if score is None else pytest.approx(score, abs=0.001))
    assert result.eligible is (reason is Reason.ELIGIBLE)


def test_reasons_say_the_figures() -> None:
    low = score_client(snap(free=60 * GIB), WEIGHTS, 20 * GIB)
    assert (
        low.detail == "below min free space: 40.0 GiB free after this torrent, min_free is 50.0 GiB"
    )
    full = score_client(snap(active=50), WEIGHTS, GIB)
    assert full.detail == "at max downloads: 50 of 50"
    down = score_client(snap(reachable=False, error="HTTP 503"), WEIGHTS, GIB)
    assert down.detail == "unreachable: HTTP 503"
    assert (
        score_client(snap(free=None), WEIGHTS, GIB).detail == "eligible (free space not reported)"
    )
    assert low.as_dict() == {
        "score": pytest.approx(0.4),
        "eligible": False,
        "reason_code": "below_min_free",
        "reason": low.detail,
        "free_after": 40 * GIB,
    }


def test_choose_the_best_eligible_first_on_ties() -> None:
    scores = [
        score_client(snap("a", active=2), WEIGHTS, GIB),
        score_client(snap("b", active=1), WEIGHTS, GIB),
        score_client(snap("c", active=1), WEIGHTS, GIB),
        score_client(snap("d", reachable=False), WEIGHTS, GIB),
    ]
    best = choose(scores)
    assert best is not None and best.seedbox == "b"
    assert choose([scores[3]]) is None
    assert choose([]) is None


def test_human_size() -> None:
    assert [human_size(n) for n in (512, 1536, 5 * MIB, 3 * GIB, 2048 * GIB, -GIB)] == [
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "2.0 TiB",
        "-1.0 GiB",
    ]
