"""The bridge as users install it, with no network.

scripts/wheelhouse builds the sdist, the wheel from it and the wheels of every dependency
into a folder, taking wheels only from the one scripts/setup made (WHEELHOUSE); a fresh
venv installs the bridge from that folder with pip, and its console script runs. pip
reads no configuration file here, so nothing but those folders can serve a wheel, and
where the network guard can run, everything runs in it and must send nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from q4d_bridge import __version__

from tests.conftest import allow_loopback_sockets
from tests.helpers.netguard import NetGuard
from tests.helpers.netguard import unavailable as netguard_unavailable

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bridge" / "q4d_bridge"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
WHEELHOUSE = CACHE / "q4d" / "wheelhouse"  # scripts/setup: scripts/wheelhouse WHEELHOUSE
NAME = f"q4d_bridge-{__version__}"
# What may sit beside the package in the sdist: the build's inputs and what it writes.
SDIST_TOP = {
    "PKG-INFO",
    "pyproject.toml",
    "setup.cfg",
    "MANIFEST.in",
    "README.md",
    "LICENSE",
    "bridge",
}
JUNK = re.compile(
    r"(^|/)(__pycache__|\.venv[^/]*|\.\w+_cache|\.git|tests?|\.coverage.*)(/|$)|\.py[co]$"
)


def source_files() -> set[str]:
    """The package's files as the repository has them, relative to bridge/."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def offline_env() -> dict[str, str]:
    """This environment without the test run's import path, pip settings or bridge
    overrides, and with pip reading no configuration file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("PIP_", "Q4D_"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetGuard | None]:
    """The network guard around every command here, where it can run."""
    if netguard_unavailable() is not None:
        yield None
        return
    allow_loopback_sockets()
    with NetGuard(tmp_path_factory.mktemp("netguard")) as running:
        yield running


def run(guard: NetGuard | None, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        guard.argv(argv) if guard else argv,
        cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheelhouse(guard: NetGuard | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no wheelhouse to build from in {WHEELHOUSE}: run scripts/setup")
    out = tmp_path_factory.mktemp("wheelhouse")
    done = run(
        guard,
        [
            str(ROOT / "scripts" / "wheelhouse"),
            "--offline",
            "--find-links",
            str(WHEELHOUSE),
            str(out),
        ],
        cwd=out,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def venv(
    guard: NetGuard | None, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh venv (pip from ensurepip) with the bridge installed from the wheelhouse."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    made = run(guard, [sys.executable, "-m", "venv", str(path)], cwd=path.parent)
    assert made.returncode == 0, made.stderr
    installed = run(
        guard,
        [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "q4d-bridge",
        ],
        cwd=path.parent,
    )
    assert installed.returncode == 0, installed.stderr
    return path


def test_sdist(wheelhouse: Path) -> None:
    """The package, the build's inputs and the license; no caches, venvs or tests."""
    with tarfile.open(wheelhouse / f"{NAME}.tar.gz") as sdist:
        names = [m.name for m in sdist.getmembers() if m.isfile()]
    assert all(n.startswith(f"{NAME}/") for n in names), names
    inside = {n.removeprefix(f"{NAME}/") for n in names}
    assert {n.split("/")[0] for n in inside} - SDIST_TOP == set()
    assert {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE"} <= inside
    assert {f"bridge/{n}" for n in source_files()} <= inside
    assert [n for n in inside if JUNK.search(n)] == []


def test_wheel(wheelhouse: Path) -> None:
    """q4d_bridge with every module and py.typed, and metadata that matches pyproject."""
    with zipfile.ZipFile(wheelhouse / f"{NAME}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        metadata = Parser().parsestr(wheel.read(f"{NAME}.dist-info/METADATA").decode())
        entry_points = wheel.read(f"{NAME}.dist-info/entry_points.txt").decode()
    package = {n for n in names if not n.startswith(f"{NAME}.dist-info/")}
    assert package == source_files()
    assert "q4d_bridge/py.typed" in package
    assert f"{NAME}.dist-info/licenses/LICENSE" in names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert metadata["Name"] == "q4d-bridge"
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == project["requires-python"]

    def normal(requirements: list[str]) -> set[tuple[str, str]]:
        return {(r.name.lower(), str(r.specifier)) for r in map(Requirement, requirements)}

    assert normal(metadata.get_all("Requires-Dist") or []) == normal(project["dependencies"])
    assert "q4d-bridge = q4d_bridge.cli:main" in entry_points


def test_wheelhouse_has_what_the_seedbox_installer_takes(wheelhouse: Path) -> None:
    """seedbox/install.sh --wheel-dir takes paho-mqtt 2.x from the same folder."""
    assert list(wheelhouse.glob("paho_mqtt-2.*-py3-none-any.whl"))


def test_installed(guard: NetGuard | None, venv: Path, tmp_path: Path) -> None:
    """The venv has the bridge from the wheel (not the source tree) and every dependency."""
    python = str(venv / "bin" / "python")
    found = run(guard, [python, "-c", "import q4d_bridge; print(q4d_bridge.__file__)"], tmp_path)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(venv)
    check = run(guard, [python, "-m", "pip", "check"], tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_console_script(guard: NetGuard | None, venv: Path, tmp_path: Path) -> None:
    script = str(venv / "bin" / "q4d-bridge")
    shown = run(guard, [script, "--version"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"q4d-bridge {__version__}"

    # bridge.example.yaml as it is, with its secret and key files made here
    raw = yaml.safe_load((ROOT / "bridge" / "bridge.example.yaml").read_text())
    for name in ("password", "id_ed25519", "known_hosts"):
        (tmp_path / name).write_text("x\n")
    raw["broker"]["password_file"] = str(tmp_path / "password")
    for seedbox in raw["seedboxes"]:
        seedbox["key"], seedbox["known_hosts"] = (
            str(tmp_path / "id_ed25519"),
            str(tmp_path / "known_hosts"),
        )
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump(raw))
    ok = run(guard, [script, "check-config", "--config", str(config)], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{config}: OK")

    raw["broker"]["port"] = 0
    config.write_text(yaml.safe_dump(raw))
    bad = run(guard, [script, "check-config", "--config", str(config)], tmp_path)
    assert bad.returncode == 1
    assert "broker.port: value must be at least 1" in bad.stderr


def test_nothing_left_the_machine(guard: NetGuard | None, venv: Path) -> None:
    """Building and installing sent no name lookup and no packet beyond loopback."""
    if guard is None:
        pytest.skip(f"the network guard cannot run here: {netguard_unavailable()}")
    guard.assert_clean()
