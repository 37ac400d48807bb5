"""The seedbox tree on the oldest Python it supports (3.8), laid out as an installer
copies it (~/.local/share/q4d-seedbox/{bin,q4d_seedbox,vendor}) without pip, and as
docs/seedbox.md's "Installing by hand" makes it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import paho
import pytest

from tests.seedbox import SEEDBOX
from tests.seedbox.installing import paho_wheel
from tests.seedbox.support import COMPLETED, Seedbox, Subscriber, info_hash

pytestmark = pytest.mark.timeout(120)


def python38() -> str:
    found = shutil.which("python3.8")
    candidates = [found] if found else []
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in Path(root).glob("versions/3.8*/bin/python3.8"))
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "pass"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python 3.8 here")


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    share = tmp_path / "share" / "q4d-seedbox"
    shutil.copytree(SEEDBOX / "bin", share / "bin")
    shutil.copytree(
        SEEDBOX / "q4d_seedbox", share / "q4d_seedbox", ignore=shutil.ignore_patterns("__pycache__")
    )
    return share


def test_runs_on_python38_with_vendored_paho(
    installed: Path, seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    py38 = python38()
    sub = subscribe(COMPLETED)
    h = info_hash("py38")
    hook = installed / "bin" / "q4d-hook"

    # No paho-mqtt: the completion is still saved, and the reason logged.
    first = seedbox.hook_run(
        "qbittorrent", h, "Show", str(tmp_path / "Show"), program=hook, python=py38
    )
    assert first.returncode == 0, first.stderr
    assert "paho-mqtt >= 2.0 is missing" in first.stderr
    assert len(seedbox.pending()) == 1

    # paho-mqtt is pure Python: the installer can put it in vendor/.
    (installed / "vendor").mkdir()
    (installed / "vendor" / "paho").symlink_to(Path(paho.__file__).parent)
    flushed = seedbox.hook_run("flush", program=hook, python=py38)
    assert flushed.returncode == 0, flushed.stderr
    second = seedbox.hook_run(
        "qbittorrent", h, "Show 2", str(tmp_path / "Show 2"), program=hook, python=py38
    )
    assert second.returncode == 0, second.stderr
    names = [m.json()["name"] for m in sub.wait_count(COMPLETED, 2)]
    assert names == ["Show", "Show 2"]

    labeld = subprocess.run(
        [py38, str(installed / "bin" / "q4d-labeld"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert labeld.returncode == 0 and labeld.stdout.startswith("q4d-labeld "), labeld.stderr


def test_every_module_compiles_on_python38(installed: Path) -> None:
    py38 = python38()
    done = subprocess.run(
        [py38, "-m", "compileall", "-q", str(installed / "q4d_seedbox")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def hand_install_commands() -> list[str]:
    """The command lines docs/seedbox.md gives under "Installing by hand"."""
    docs = (SEEDBOX.parent / "docs" / "seedbox.md").read_text()
    section = docs.split("\n## Installing by hand\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [
        line
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]


@pytest.mark.parametrize("paho_from", ["pip", "zipfile"])
def test_the_hand_install_in_the_docs(tmp_path: Path, paho_from: str) -> None:
    """Debian 12's pip refuses --user; the docs' --target (or the unpacked wheel) works,
    run here with Python 3.8 as the `python3` on PATH. pip gets the wheel from a local
    directory instead of the index."""
    commands = hand_install_commands()
    assert not [c for c in commands if "--user" in c]
    wheel = paho_wheel(tmp_path / "work")
    (tmp_path / "work" / "seedbox").symlink_to(SEEDBOX)
    (tmp_path / "pybin").mkdir()
    (tmp_path / "pybin" / "python3").symlink_to(python38())
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": os.pathsep.join([str(tmp_path / "pybin"), "/usr/bin", "/bin"]),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheel.parent),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    vendors = [c for c in commands if "q4d-seedbox/vendor" in c]
    assert [c.split()[2] for c in vendors] == ["pip", "zipfile"]
    chosen = vendors[0] if paho_from == "pip" else vendors[1]
    for command in [*[c for c in commands if c not in vendors], chosen]:
        done = subprocess.run(
            ["sh", "-c", command],
            cwd=tmp_path / "work",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stderr}"
    labeld = subprocess.run(
        [str(home / ".local/share/q4d-seedbox/bin/q4d-labeld"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert labeld.returncode == 0 and labeld.stdout.startswith("q4d-labeld "), labeld.stderr
    assert (home / ".local/share/q4d-seedbox/vendor/paho/mqtt/client.py").exists()
