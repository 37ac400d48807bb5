"""The SFTP engine's adaptation to the link (transfer/engines/sftp_adapt.py), as pure
decisions: the request window grows while reads come back in a round trip, connections
are added while that pays and not once it stops paying, nothing changes on a short
link or near the end of a transfer."""

from __future__ import annotations

from q4d_bridge.transfer.engines.sftp_adapt import (
    MAX_STEP,
    Adaptation,
    Decision,
    interval_for,
)

MB = 1_000_000
RTT = 0.16
LOTS = 10**12  # bytes left: plenty


def adaptation(**kw: int | float) -> Adaptation:
    values: dict[str, int | float] = {
        "rtt": RTT, "connections": 6, "max_connections": 24, "requests": 12, "max_requests": 64,
    }  # fmt: skip
    values.update(kw)
    return Adaptation(**values)  # type: ignore[arg-type]


def test_reads_answered_in_a_round_trip_widen_the_window_up_to_its_ceiling() -> None:
    a = adaptation(max_requests=30)
    assert a.step(10 * MB, 1.2 * RTT, LOTS) == Decision(requests=18)
    assert a.step(14 * MB, 1.3 * RTT, LOTS) == Decision(requests=27)
    assert a.step(16 * MB, 1.5 * RTT, LOTS) == Decision(requests=30)
    # At the ceiling: the next step is about connections (reads queue now).
    assert a.step(16 * MB, 3 * RTT, LOTS) == Decision(add_connections=6)


def test_connections_are_added_while_they_pay_and_not_after() -> None:
    a = adaptation(connections=4)
    queued = 4 * RTT  # reads wait behind what each TCP connection carries
    assert a.step(4 * MB, queued, LOTS) == Decision(add_connections=4)  # 4 -> 8
    # twice the connections: +50 % rate or more counts as paying
    assert a.step(6.5 * MB, queued, LOTS) == Decision(add_connections=8)  # 8 -> 16
    assert a.step(7 * MB, queued, LOTS) == Decision()  # +8 % for +100 %: the link is full
    assert a.step(7 * MB, queued, LOTS) == Decision()
    assert a.connections == 16
    assert [c for _rate, c, _r in a.history] == [4, 8, 16, 16]


def test_additions_stop_at_the_ceiling_and_never_exceed_a_handshake_burst() -> None:
    a = adaptation(connections=20, max_connections=24)
    assert a.step(50 * MB, 4 * RTT, LOTS) == Decision(add_connections=4)
    b = adaptation(connections=30, max_connections=64)
    assert b.step(50 * MB, 4 * RTT, LOTS) == Decision(add_connections=MAX_STEP)
    c = adaptation(connections=24, max_connections=24)
    assert c.step(50 * MB, 4 * RTT, LOTS) == Decision()


def test_a_seedbox_refusing_connections_ends_the_additions() -> None:
    a = adaptation()
    assert a.step(6 * MB, 4 * RTT, LOTS) == Decision(add_connections=6)
    a.opened(6, 2)
    assert a.connections == 8
    for _ in range(3):
        assert a.step(9 * MB, 4 * RTT, LOTS) == Decision()
    a2 = adaptation()
    a2.step(6 * MB, 4 * RTT, LOTS)
    a2.opened(6, 0)
    assert (a2.connections, a2.step(6 * MB, 4 * RTT, LOTS)) == (6, Decision())


def test_short_links_and_the_end_of_a_transfer_change_nothing() -> None:
    lan = adaptation(rtt=0.002)
    assert lan.step(100 * MB, 0.1, LOTS) == Decision()
    assert lan.step(100 * MB, 0.001, LOTS) == Decision()
    near_end = adaptation()
    # 3 s at 6 MB/s is left, less than the time an addition needs to pay.
    assert near_end.step(6 * MB, 4 * RTT, 18 * MB) == Decision()
    assert near_end.step(6 * MB, 4 * RTT, 60 * MB) == Decision(add_connections=6)


def test_intervals_cover_several_round_trips_and_the_summary_shows_the_steps() -> None:
    assert interval_for(0.0) == 1.0
    assert interval_for(0.5) == 3.0
    a = adaptation()
    a.step(6 * MB, 1.1 * RTT, LOTS)
    assert a.summary() == {
        "rtt_ms": 160.0,
        "connections": 6,
        "requests": 18,
        "steps": [{"mb_s": 6.0, "connections": 6, "requests": 12}],
    }
