"""How many connections and read requests a long link wants, learned during a transfer.

On a lossy long link each TCP connection's window stays small (every loss halves it,
and growing back takes round trips), so one connection carries a fraction of the link
and more connections win. How many is not known beforehand, so the transfer measures:

- The window: a connection with R requests of B bytes in flight moves R x B per read
  latency. While reads come back in about one round trip, nothing queues and the
  requests, not the link, are the limit: the window grows by half (up to the SSH
  channel window).
- Connections: while reads queue (each connection's TCP is the limit), double them,
  and keep adding while the last addition paid (the rate rose by at least half of
  what the added share would give if connections scaled perfectly). Once one does
  not, the link (or the CPU) is full: stop.

Below MIN_RTT a connection's TCP is not what limits a transfer, and nothing changes.
Additions stop when what is left would be gone before new connections (about ten round
trips of handshakes) could help. The pure part: the caller measures and acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_RTT = 0.02  # seconds
SETTLE_INTERVALS = 1  # measured after an addition (once it is open) before judging it
QUEUED = 2.0  # read latency over this many RTTs: requests queue behind the link
WORTH_SECONDS = 3.0  # an addition needs this much transfer left at the current rate
MAX_STEP = 8  # opened at once: sshd drops handshakes beyond MaxStartups (10)


def interval_for(rtt: float) -> float:
    """Long enough for a rate to mean something on a link with this round trip."""
    return max(1.0, 6 * rtt)


@dataclass(frozen=True, slots=True)
class Decision:
    add_connections: int = 0
    requests: int = 0  # per connection; 0: unchanged


@dataclass(slots=True)
class Adaptation:
    """The state of one transfer's adaptation, and its history for the figures."""

    rtt: float
    connections: int
    max_connections: int
    requests: int
    max_requests: int
    history: list[tuple[float, int, int]] = field(default_factory=list)  # rate, conns, reqs
    _before: float = 0.0  # rate just before the last addition
    _added_from: int = 0  # connections just before it
    _settling: int = 0
    _saturated: bool = False

    def step(self, rate: float, latency: float, remaining: int) -> Decision:
        """One interval's rate (bytes/s) and mean read latency (s), and the bytes still
        to fetch: what to change now."""
        self.history.append((rate, self.connections, self.requests))
        if self.rtt < MIN_RTT:
            return Decision()
        if self._settling:
            self._settling -= 1
            if self._settling:
                return Decision()
            share = self.connections / self._added_from - 1
            if rate < self._before * (1 + share / 2):
                self._saturated = True
        if latency < QUEUED * self.rtt and self.requests < self.max_requests:
            self.requests = min(self.max_requests, self.requests + max(1, self.requests // 2))
            return Decision(requests=self.requests)
        worth = rate > 0 and remaining / rate >= WORTH_SECONDS + 10 * self.rtt
        if self._saturated or self.connections >= self.max_connections or not worth:
            return Decision()
        add = min(MAX_STEP, max(2, self.connections), self.max_connections - self.connections)
        self._before, self._added_from = rate, self.connections
        self.connections += add
        self._settling = SETTLE_INTERVALS
        return Decision(add_connections=add)

    def opened(self, wanted: int, got: int) -> None:
        """Fewer connections opened than decided (the seedbox refused more): stop
        there, and judge the addition by what did open."""
        self.connections -= wanted - got
        if got < wanted:
            self._saturated = True
        if self.connections == self._added_from:
            self._settling = 0

    def summary(self) -> dict[str, object]:
        return {
            "rtt_ms": round(self.rtt * 1000, 1),
            "connections": self.connections,
            "requests": self.requests,
            "steps": [
                {"mb_s": round(rate / 1e6, 1), "connections": conns, "requests": reqs}
                for rate, conns, reqs in self.history
            ],
        }
