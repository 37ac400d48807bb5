"""Home Assistant at scale: the q4d integration with 1000 live items, on each Home
Assistant version the tests use, this tree side by side with a baseline (git `main`).

The scenario lives in tests/components/q4d/test_load.py (pytest-homeassistant-custom-
component's real HA core, MQTT messages injected), where its counts are asserted: a run
whose state writes are not exactly what the entities should write fails, and so does
this benchmark. Two scenarios: item entities on (4 sensors and 2 buttons per item) and
the default (no item entities; the model feeds the card). Figures, in CPU time of the
test process (the harness that injects the messages included, the same for both):

- set-up: 1000 retained `transferring` items and a state snapshot arrive; CPU until
  every entity is added and written (target <= 1.0 s);
- updates: each item published twice within every simulated second (progress and time
  left change each time: 2000 item messages/s, twice the bridge's own rate of at most
  one per item per second, so that the integration's per-entity write throttle merges
  them), 5 s; CPU milliseconds per second of updates (target <= 0.5 x the baseline).

The baseline runs the same test file against the baseline's custom_components, copied
into a temporary tree next to this tree's tests; each figure is the lowest of --runs
runs (CPU time only grows under load). The machine's load average is printed and saved
with the figures, in bench/results/ha_load.json.

Run: .venv/bin/python bench/ha_load.py [--runs 3] [--baseline main]
     [--python .venv/bin/python --python .venv-ha/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ha_load.json"
TEST = "tests/components/q4d/test_load.py"
SETUP_TARGET_S = 1.0
UPDATE_TARGET_RATIO = 0.5
# What the test needs besides the integration (tests/conftest.py imports tests.helpers).
TREE = ("pyproject.toml", "tests/__init__.py", "tests/conftest.py", "tests/helpers",
        "tests/components")  # fmt: skip


def make_tree(dest: Path, baseline: str | None) -> Path:
    """This tree's tests with this tree's integration, or the baseline ref's."""
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    if baseline is None:
        shutil.copytree(ROOT / "custom_components", dest / "custom_components",
                        ignore=shutil.ignore_patterns("__pycache__", "node_modules"))  # fmt: skip
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", baseline, "custom_components"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def ha_version(python: str) -> str:
    code = "import sys, homeassistant.const as c; print(c.__version__, sys.version.split()[0])"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    version, py = out.stdout.split()
    return f"HA {version} (Python {py})"


def run_once(python: str, tree: Path) -> dict[str, dict[str, Any]]:
    """One pytest run of both scenarios; their figures by scenario."""
    result = subprocess.run(
        [python, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TEST,
         "-k", "thousand_live_items"],
        cwd=tree, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    figures = [
        json.loads(line.split("ha_load ", 1)[1])
        for line in result.stdout.splitlines()
        if line.startswith("ha_load ")
    ]
    if result.returncode != 0 or len(figures) != 2:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"the load scenario failed ({python}, {tree})")
    return {f["scenario"]: f for f in figures}


def best(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per scenario, the lowest CPU figures over the runs (and every run's, for the record)."""
    out: dict[str, dict[str, Any]] = {}
    for scenario in runs[0]:
        rows = [run[scenario] for run in runs]
        out[scenario] = {
            **rows[0],
            "setup_cpu_s": min(r["setup_cpu_s"] for r in rows),
            "update_cpu_ms_per_s": min(r["update_cpu_ms_per_s"] for r in rows),
            "runs": rows,
        }
    return out


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def report(version: str, before: dict[str, Any], after: dict[str, Any], baseline: str) -> None:
    print(f"\n{version}: 1000 live items, 2000 item messages per simulated second")
    print(f"  {'scenario':<28}{'figure':<26}{baseline:>9}{'this':>9}{'ratio':>7}  target")
    for scenario, new in after.items():
        old = before[scenario]
        setup_ratio = new["setup_cpu_s"] / old["setup_cpu_s"]
        update_ratio = new["update_cpu_ms_per_s"] / old["update_cpu_ms_per_s"]
        new["verdicts"] = {
            "setup": verdict(new["setup_cpu_s"] <= SETUP_TARGET_S),
            "updates": verdict(update_ratio <= UPDATE_TARGET_RATIO),
        }
        print(f"  {scenario:<28}{'set-up, CPU s':<26}{old['setup_cpu_s']:>9.2f}"
              f"{new['setup_cpu_s']:>9.2f}{setup_ratio:>7.2f}  <= {SETUP_TARGET_S:.1f} s "
              f"{new['verdicts']['setup']}")  # fmt: skip
        print(f"  {'':<28}{'updates, CPU ms per s':<26}{old['update_cpu_ms_per_s']:>9.0f}"
              f"{new['update_cpu_ms_per_s']:>9.0f}{update_ratio:>7.2f}  <= {UPDATE_TARGET_RATIO}"
              f" x {baseline} {new['verdicts']['updates']}")  # fmt: skip
        print(f"  {'':<28}{'state writes per s':<26}{old['writes_per_s']:>9.0f}"
              f"{new['writes_per_s']:>9.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default="main", help="git ref of the 'before' column")
    parser.add_argument("--python", action="append", default=[],
                        help="interpreter of a Home Assistant venv (repeat; default: "
                        ".venv and .venv-ha of this tree)")  # fmt: skip
    args = parser.parse_args()
    pythons = args.python or [str(ROOT / ".venv/bin/python"), str(ROOT / ".venv-ha/bin/python")]
    results: dict[str, Any] = {"baseline": args.baseline, "runs": args.runs, "versions": {}}
    with tempfile.TemporaryDirectory(prefix="q4d-ha-load-") as tmp:
        trees = {
            "before": make_tree(Path(tmp) / "before", args.baseline),
            "after": make_tree(Path(tmp) / "after", None),
        }
        for python in pythons:
            version = ha_version(python)
            load_before = os.getloadavg()
            runs: dict[str, list[dict[str, dict[str, Any]]]] = {"before": [], "after": []}
            for _ in range(args.runs):  # interleaved: a load spike hits both columns
                for column, tree in trees.items():
                    runs[column].append(run_once(python, tree))
            figures = {column: best(column_runs) for column, column_runs in runs.items()}
            report(version, figures["before"], figures["after"], args.baseline)
            load = {"before": load_before, "after": os.getloadavg()}
            print(f"  load average (1, 5, 15 min): {load['before'][0]:.2f} "
                  f"{load['before'][1]:.2f} {load['before'][2]:.2f} at the start, "
                  f"{load['after'][0]:.2f} {load['after'][1]:.2f} {load['after'][2]:.2f} "
                  "at the end (other jobs on this machine count too)")  # fmt: skip
            results["versions"][version] = {**figures, "python": python, "loadavg": load}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nsaved {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
