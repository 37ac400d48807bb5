"""Raw TCP probes run inside a namespace by bench/wan.py: goodput sink/source, RTT echo.

  sink   --bind A --port P --streams N --seconds S --warmup W  -> prints "listening", then
         one JSON line: steady-state goodput (bytes received after W s, per second)
  source --to A --port P --streams N --seconds S               -> sends zeros for S s
  echo   --bind A --port P                                     -> prints "listening";
         echoes one connection
  rtt    --to A --port P --count C                             -> JSON: min/median ms

Stdlib only; every loop is bounded by its --seconds / --count and a socket timeout.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time

BLOCK = 1 << 20
IDLE_TIMEOUT = 30.0


def listener(bind: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.listen(backlog)
    sock.settimeout(IDLE_TIMEOUT)
    print("listening", flush=True)
    return sock


def sink(args: argparse.Namespace) -> None:
    server = listener(args.bind, args.port, args.streams)
    conns = [server.accept()[0] for _ in range(args.streams)]
    start = time.monotonic()
    steady_from = start + args.warmup
    deadline = start + args.seconds + IDLE_TIMEOUT
    counted = [0] * len(conns)

    def drain(i: int, conn: socket.socket) -> None:
        buf = bytearray(BLOCK)
        conn.settimeout(IDLE_TIMEOUT)
        while time.monotonic() < deadline and (n := conn.recv_into(buf)):
            if time.monotonic() >= steady_from:
                counted[i] += n

    threads = [threading.Thread(target=drain, args=(i, c)) for i, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - steady_from
    print(json.dumps({"streams": args.streams, "bytes": sum(counted), "seconds": elapsed}))


def source(args: argparse.Namespace) -> None:
    conns = [
        socket.create_connection((args.to, args.port), timeout=IDLE_TIMEOUT)
        for _ in range(args.streams)
    ]
    deadline = time.monotonic() + args.seconds

    def pump(conn: socket.socket) -> None:
        block = bytes(BLOCK)
        while time.monotonic() < deadline:
            conn.sendall(block)
        conn.close()

    threads = [threading.Thread(target=pump, args=(c,)) for c in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def echo(args: argparse.Namespace) -> None:
    server = listener(args.bind, args.port, 1)
    conn, _ = server.accept()
    conn.settimeout(IDLE_TIMEOUT)
    while data := conn.recv(64):
        conn.sendall(data)


def rtt(args: argparse.Namespace) -> None:
    conn = socket.create_connection((args.to, args.port), timeout=IDLE_TIMEOUT)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(args.count):
        t0 = time.perf_counter()
        conn.sendall(b"x")
        if not conn.recv(64):
            break
        samples.append((time.perf_counter() - t0) * 1000)
    conn.close()
    print(json.dumps({"min_ms": min(samples), "median_ms": statistics.median(samples)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("sink", "echo"):
        p = sub.add_parser(name)
        p.add_argument("--bind", required=True)
        p.add_argument("--port", type=int, required=True)
        if name == "sink":
            p.add_argument("--streams", type=int, default=1)
            p.add_argument("--seconds", type=float, default=10)
            p.add_argument("--warmup", type=float, default=2)
    for name in ("source", "rtt"):
        p = sub.add_parser(name)
        p.add_argument("--to", required=True)
        p.add_argument("--port", type=int, required=True)
        if name == "source":
            p.add_argument("--streams", type=int, default=1)
            p.add_argument("--seconds", type=float, default=10)
        else:
            p.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    {"sink": sink, "source": source, "echo": echo, "rtt": rtt}[args.cmd](args)


if __name__ == "__main__":
    main()
