"""Home Assistant under load: the q4d integration with 1000 live items, each updated by
the bridge every second (pytest-homeassistant-custom-component's real HA core, MQTT
messages injected). Prints the set-up time, the state writes per second, and the most
writes any one entity made (the integration throttles each entity to one per second).

The scenario lives in tests/components/q4d/test_load.py, where its counts are asserted;
this runs it and prints the measured figures.

Run: .venv/bin/python bench/ha_load.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
            "tests/components/q4d/test_load.py", "-k", "thousand_live_items",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    figures = [line for line in result.stdout.splitlines() if "live items" in line]
    if result.returncode != 0 or not figures:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit("the load scenario failed")
    for line in figures:
        print(line.strip())


if __name__ == "__main__":
    main()
