"""What the install.sh tests share: a temporary HOME to run it in, listings of that
home, fake commands, a paho-mqtt wheel, and the running processes it starts."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho

from tests.seedbox import SEEDBOX
from tests.seedbox.support import SEEDBOX_ID

INSTALL = SEEDBOX / "install.sh"


def listing(root: Path, *, mtimes: bool = False) -> dict[str, tuple[object, ...]]:
    """Every path under root: kind, mode, content hash (and mtime of files)."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if path.is_symlink():
            entry: tuple[object, ...] = ("link", str(path.readlink()))
        elif path.is_dir():
            entry = ("dir", mode)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entry = ("file", mode, digest, *((info.st_mtime_ns,) if mtimes else ()))
        found[str(path.relative_to(root))] = entry
    return found


@dataclass
class Home:
    """A user's home for install.sh, with a few files of the user's own in it."""

    path: Path
    fakebin: Path
    broker_port: int
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @property
    def bin(self) -> Path:
        return self.path / ".local" / "bin"

    @property
    def tree(self) -> Path:
        return self.path / ".local" / "share" / "q4d-seedbox"

    @property
    def config(self) -> Path:
        return self.path / ".config" / "q4d" / "seedbox.conf"

    @property
    def state(self) -> Path:
        return self.path / ".local" / "state" / "q4d"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TR_", "Q4D_"))}
        # pip runs `rustc --version` for its user agent; rustup's proxy then makes ~/.rustup.
        path = [p for p in os.environ["PATH"].split(os.pathsep) if ".cargo" not in p]
        env.update(HOME=str(self.path), PATH=os.pathsep.join([str(self.fakebin), *path]))
        return env

    def run(
        self, *args: str, stdin: str | None = None, expect: int = 0, script: Path = INSTALL
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(script), *args],
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.runs.append(done)
        assert done.returncode == expect, done.stdout + done.stderr
        return done

    def install(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        base = ["--broker-host", "127.0.0.1", "--broker-port", str(self.broker_port)]
        base += ["--seedbox-id", SEEDBOX_ID]
        if "--python" not in args:
            base += ["--python", sys.executable]
        if "--service" not in args:
            base += ["--service", "none"]
        return self.run(*base, *args, **kw)

    def uninstall(self, *args: str, script: Path = INSTALL) -> subprocess.CompletedProcess[str]:
        return self.run("--uninstall", *args, script=script)

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        """A command line as the user types it, in this home."""
        return subprocess.run(
            ["sh", "-c", command],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def hook(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "q4d-hook"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def output(self) -> str:
        return "".join(run.stdout + run.stderr for run in self.runs)


def secret(tmp_path: Path, name: str, password: str) -> Path:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def idempotent(home: Home, *args: str) -> None:
    before = listing(home.path, mtimes=True)
    home.install(*args)
    assert listing(home.path, mtimes=True) == before


def paho_wheel(directory: Path) -> Path:
    """A paho-mqtt wheel made from the one this venv has (pure Python), so the test
    needs no package index: what a user copies over for an offline seedbox."""
    package = Path(paho.__file__).parent
    dist = next(package.parent.glob("paho_mqtt-2.*.dist-info"))
    version = dist.name.removesuffix(".dist-info").split("-")[1]
    directory.mkdir(exist_ok=True)
    wheel = directory / f"paho_mqtt-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in sorted([*package.rglob("*"), *dist.rglob("*")]):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, str(path.relative_to(package.parent)))
    return wheel


def fake(path: Path, script: str) -> None:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def labelds(home: Home) -> dict[int, str]:
    """The q4d-labeld processes running from this home's install: pid -> its Python."""
    script = str(home.tree / "bin" / "q4d-labeld")
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = argv(int(entry.name))
            if len(args) > 1 and args[1] == script:
                found[int(entry.name)] = args[0]
    return found


def cron_daemon_seen() -> bool | None:
    """Whether a cron daemon runs (as install.sh tells); None: /proc hides it."""
    if not os.access("/proc/1/comm", os.R_OK):
        return None
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("cron", "crond", "fcron", "cronie"):
                return True
        except OSError:
            continue
    return False


def advice(output: str, what: str) -> str:
    """The command install.sh names for `what` (it ends the sentence)."""
    found = re.search(rf"{what}: (.+?)\n", output)
    assert found, output
    return found.group(1)
