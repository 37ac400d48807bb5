"""The image's HEALTHCHECK: exit 0 when the bridge in this container is alive, else 1
with the reason on stdout (docker/podman inspect shows it).

With the HTTP API enabled, its liveness probe answers: GET /health is 200 whenever the
bridge's event loop runs (docs/metrics.md#health-and-readiness). /ready is not used: a
broker outage makes the bridge unready, and restarting it mends nothing.

Without the API the bridge opens no port. `q4d-bridge status` is no check: it reads the
store and answers the same whether a bridge runs or not. What proves a bridge runs is
its lock on the data directory (q4d_bridge/datadir.py), an flock the kernel drops when
the process ends, even by kill -9. The lock is looked up in /proc/locks and never
taken: holding it even for a moment could make a bridge that starts then exit.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from q4d_bridge.config.loader import ConfigError, load_config

TIMEOUT = 5.0


def lock_holder(lock: Path) -> bool:
    """Whether a process holds an exclusive flock on `lock`."""
    try:
        st = lock.stat()
    except OSError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        # "1: FLOCK  ADVISORY  WRITE 42 00:2f:1234 0 EOF"; a waiter's line has "->"
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        major, minor, inode = fields[5].split(":")
        if int(inode) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev:
            return True
    return False


def check() -> str | None:
    """None when healthy, else why not."""
    path = Path(os.environ.get("Q4D_CONFIG", "/config/bridge.yaml"))
    if not path.exists():
        path = Path("/dev/null")  # as the entrypoint: the environment alone
    try:
        config = load_config(path)
    except ConfigError as err:
        return f"invalid configuration: {'; '.join(err.errors)}"
    api = config.api
    if api.enabled and api.port:
        # An API listening on every address is asked on loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(api.host, api.host)  # noqa: S104
        url = f"http://{f'[{host}]' if ':' in host else host}:{api.port}/health"
        # No proxy from the environment: the API is in this container.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=TIMEOUT) as response:
                status = response.status
        except OSError as err:
            return f"{url}: {err}"
        return None if status == 200 else f"{url}: HTTP {status}"
    lock = config.data_dir / ".lock"
    return None if lock_holder(lock) else f"no q4d-bridge holds {lock}"


def main() -> int:
    problem = check()
    print(problem or "healthy")
    return 0 if problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
