"""Raw TCP probes run inside a namespace by bench/wan.py: goodput sink/source, RTT echo.

  sink   --bind A --port P --streams N --seconds S --warmup W  -> prints "listening", then
         one JSON line: steady-state goodput (bytes received after W s, per second)
  source --to A --port P --streams N --seconds S               -> sends zeros for S s
  echo   --bind A --port P                                     -> prints "listening";
         echoes one connection
  rtt    --to A --port P --count C                             -> JSON: min/median ms
  serve  --bind A --port P --streams N                         -> prints "listening";
         on each of N connections, reads an 8-byte length and sends that many bytes
  fetch  --to A --port P --streams N --bytes B --idle I        -> opens N connections,
         leaves them idle I s (like a pool kept open), then asks for B bytes spread
         over them: JSON with the seconds from the requests to the last byte

Stdlib only; every loop is bounded by its --seconds / --count / --bytes and a socket timeout.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable

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


def accept_all(args: argparse.Namespace) -> list[socket.socket]:
    server = listener(args.bind, args.port, args.streams)
    return [server.accept()[0] for _ in range(args.streams)]


def connect_all(args: argparse.Namespace) -> list[socket.socket]:
    return [
        socket.create_connection((args.to, args.port), timeout=IDLE_TIMEOUT)
        for _ in range(args.streams)
    ]


def in_threads(work: Callable[[int, socket.socket], None], conns: list[socket.socket]) -> None:
    """work(i, conn) for every connection at once; returns when all are done."""
    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def sink(args: argparse.Namespace) -> None:
    conns = accept_all(args)
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

    in_threads(drain, conns)
    elapsed = time.monotonic() - steady_from
    print(json.dumps({"streams": args.streams, "bytes": sum(counted), "seconds": elapsed}))


def source(args: argparse.Namespace) -> None:
    conns = connect_all(args)
    deadline = time.monotonic() + args.seconds

    def pump(_i: int, conn: socket.socket) -> None:
        block = bytes(BLOCK)
        while time.monotonic() < deadline:
            conn.sendall(block)
        conn.close()

    in_threads(pump, conns)


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


def serve(args: argparse.Namespace) -> None:
    conns = accept_all(args)

    def send(_i: int, conn: socket.socket) -> None:
        conn.settimeout(IDLE_TIMEOUT)
        header = conn.recv(8, socket.MSG_WAITALL)
        left = int.from_bytes(header, "big")
        block = memoryview(bytes(BLOCK))
        while left > 0:
            left -= conn.send(block[: min(left, BLOCK)])
        conn.close()

    in_threads(send, conns)


def fetch(args: argparse.Namespace) -> None:
    conns = connect_all(args)
    time.sleep(args.idle)
    shares = [args.bytes // args.streams] * args.streams
    shares[0] += args.bytes % args.streams
    received = [0] * len(conns)

    def pull(i: int, conn: socket.socket) -> None:
        conn.sendall(shares[i].to_bytes(8, "big"))
        buf = bytearray(BLOCK)
        while received[i] < shares[i] and (n := conn.recv_into(buf)):
            received[i] += n
        conn.close()

    start = time.monotonic()
    in_threads(pull, conns)
    elapsed = time.monotonic() - start
    print(json.dumps({"streams": args.streams, "bytes": sum(received), "seconds": elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("sink", "echo", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--bind", required=True)
        p.add_argument("--port", type=int, required=True)
        if name != "echo":
            p.add_argument("--streams", type=int, default=1)
        if name == "sink":
            p.add_argument("--seconds", type=float, default=10)
            p.add_argument("--warmup", type=float, default=2)
    for name in ("source", "rtt", "fetch"):
        p = sub.add_parser(name)
        p.add_argument("--to", required=True)
        p.add_argument("--port", type=int, required=True)
        if name != "rtt":
            p.add_argument("--streams", type=int, default=1)
        if name == "source":
            p.add_argument("--seconds", type=float, default=10)
        elif name == "rtt":
            p.add_argument("--count", type=int, default=20)
        else:
            p.add_argument("--bytes", type=int, required=True)
            p.add_argument("--idle", type=float, default=1.0)
    args = parser.parse_args()
    commands = {"sink": sink, "source": source, "echo": echo, "rtt": rtt}
    commands |= {"serve": serve, "fetch": fetch}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
