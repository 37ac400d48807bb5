"""bench/wan.py's table and summary: each row's figures, then per scenario q4d's best
engine against the link, raw TCP with the same bytes and the best peer, with PASS/MISS
for the ratios the profile sets a target for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wan_profiles import Profile, Scenario


@dataclass(slots=True)
class Row:
    scenario: str
    tool: str
    kind: str  # "peer" or "q4d"
    mb_s: float | None
    seconds: float | None
    ok: bool
    note: str = ""
    cpu_busy: float = 0.0  # both cores, 0..1: near 1 means ssh crypto, not the link, set the pace
    lost_at_cap: int = 0  # packets the 1 Gbit/s bottleneck dropped (TCP probing it)
    files_s: float | None = None  # payload files per second (profiles that count them)
    adaptation: dict[str, Any] | None = None  # what the engine chose, if it says
    phases: dict[str, float] | None = None  # q4d: seconds into the attempt each phase began


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def mark(targets: dict[str, float], key: str, value: float) -> str:
    """' PASS'/' MISS' against the profile's lower bound for key; '' without one."""
    return f" {verdict(value >= targets[key])}" if key in targets else ""


def table(link: dict[str, Any], rows: list[Row], profile: Profile) -> None:
    limit = max(link["goodput_mb_s"].values())
    print()
    print(f"WAN: RTT {link['rtt_ms']['median_ms']:.1f} ms, link goodput "
          + ", ".join(f"{k} streams {v:.1f} MB/s" for k, v in link["goodput_mb_s"].items()))  # fmt: skip
    files = f" {'files/s':>8}" if profile.files_per_s else ""
    print(f"{'scenario':<22} {'tool':<52} {'MB/s':>8} {'/link':>6}{files} {'cpu':>5}")
    for row in rows:
        speed = f"{row.mb_s:8.1f} {row.mb_s / limit:6.2f}" if row.mb_s else f"{'-':>8} {'-':>6}"
        if profile.files_per_s:
            speed += f" {row.files_s:8.1f}" if row.files_s else f" {'-':>8}"
        status = "" if row.ok else "FAIL " + row.note
        print(f"{row.scenario:<22} {row.tool:<52} {speed} {row.cpu_busy:5.0%} {status}")
        if row.phases:
            began = ", ".join(f"{phase} at {t:.2f} s" for phase, t in row.phases.items())
            print(f"{'':<22}   {began}, done at {row.seconds:.2f} s")
        if row.adaptation is not None:
            print(f"{'':<22}   adaptation {json.dumps(row.adaptation, sort_keys=True)}")
    print(f"/link: share of the link limit ({limit:.1f} MB/s); cpu: both cores' busy time")
    if link.get("loss_pct"):
        directions = link["delay_line"]["directions"]
        lost, delivered = (sum(d[key] for d in directions) for key in ("lost", "packets"))
        sent = max(1, lost + delivered)
        print(f"random loss: {lost:,} of {sent:,} packets ({lost / sent:.3%}), asked "
              f"{link['loss_pct']:g} % each way")  # fmt: skip


def summarize(
    link: dict[str, Any], rows: list[Row], scenarios: list[Scenario], profile: Profile
) -> dict[str, Any]:
    """Print and return, per scenario, q4d's best engine against its references."""
    targets = profile.targets
    limit = max(link["goodput_mb_s"].values())
    summary = {}
    print("\nsummary (best q4d engine)")
    for scenario in scenarios:
        ok = [r for r in rows if r.scenario == scenario.name and r.ok and r.mb_s]
        engines = [r for r in ok if r.kind == "q4d"]
        peers = [r for r in ok if r.kind == "peer"]
        if not engines:
            continue
        best = max(engines, key=lambda r: r.mb_s or 0)
        entry: dict[str, Any] = {
            "best_engine": best.tool,
            "mb_s": best.mb_s,
            "vs_link": (best.mb_s or 0) / limit,
        }
        line = (f"  {scenario.name:<22} {best.tool:<10} {best.mb_s:6.1f} MB/s  "
                f"vs link {entry['vs_link']:.2f}{mark(targets, 'vs_link', entry['vs_link'])}")  # fmt: skip
        if profile.files_per_s and best.files_s:
            entry["files_s"] = best.files_s
            line += f"  {best.files_s:.1f} files/s"
        raw = max(link["payload_mb_s"].get(scenario.name, {}).values(), default=None)
        if raw:
            entry |= {"raw_tcp_mb_s": raw, "vs_raw_tcp": (best.mb_s or 0) / raw}
            line += (f"  vs raw TCP, same bytes ({raw:.1f}, {raw / limit:.2f} x link) "
                     f"{entry['vs_raw_tcp']:.2f}{mark(targets, 'vs_raw_tcp', entry['vs_raw_tcp'])}")  # fmt: skip
        if peers:
            peer = max(peers, key=lambda r: r.mb_s or 0)
            entry |= {
                "best_peer": peer.tool,
                "peer_mb_s": peer.mb_s,
                "vs_peer": (best.mb_s or 0) / (peer.mb_s or 1),
            }
            line += (f"  vs best peer ({peer.tool}, {peer.mb_s:.1f}) {entry['vs_peer']:.2f}"
                     f"{mark(targets, 'vs_peer', entry['vs_peer'])}")  # fmt: skip
        summary[scenario.name] = entry
        print(line)
    return summary


def loopback_lines(loopback: dict[str, Any], targets: dict[str, float]) -> None:
    cpu, ver = loopback["bridge_cpu"], loopback["verify"]
    print(f"  bridge CPU (loopback, lftp, {cpu['mb_s']:.0f} MB/s)  {cpu['cpu_s_per_gib']:.3f} CPU-s/GiB "
          f"(target <= {targets['cpu_s_per_gib']}) {verdict(cpu['cpu_s_per_gib'] <= targets['cpu_s_per_gib'])}")  # fmt: skip
    print(f"  verify {ver['verify_mb_s']:.0f} MB/s vs sha1 {ver['sha1_mb_s']:.0f} MB/s  "
          f"ratio {ver['ratio']:.2f} (target >= {targets['verify_vs_sha1']}) "
          f"{verdict(ver['ratio'] >= targets['verify_vs_sha1'])}")  # fmt: skip
