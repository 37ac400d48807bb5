"""seedbox/install.sh into a temporary HOME, against the real torrent-client daemons:
what it writes (and with which modes), the hook wired into each client, a second run
that changes nothing, and --uninstall leaving HOME (and the client) as it found them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho
import pytest
from q4d_seedbox.clients.rtorrent import server_proxy
from q4d_seedbox.installer import remove_block, set_block

from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto
from tests.seedbox import SEEDBOX
from tests.seedbox.support import (
    COMPLETED,
    SEEDBOX_ID,
    Deluge,
    DelugeWeb,
    QbtApi,
    RTorrent,
    Subscriber,
    Transmission,
    TransmissionRpc,
    need,
    wait_until,
)
from tests.seedbox.test_python38 import python38

pytestmark = pytest.mark.timeout(180)

INSTALL = SEEDBOX / "install.sh"
QBT_ARGS = 'qbittorrent "%I" "%N" "%F" "%L" "%G" "%Z" "%T"'
TR_ENABLED, TR_FILENAME = "script-torrent-done-enabled", "script-torrent-done-filename"


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
        self, *args: str, stdin: str | None = None, expect: int = 0
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(INSTALL), *args],
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

    def uninstall(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("--uninstall", *args)

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


@pytest.fixture
def home(tmp_path: Path, mosquitto: Mosquitto) -> Home:
    path = tmp_path / "home"
    (path / ".local" / "bin").mkdir(parents=True)
    (path / ".local" / "bin" / "my-tool").write_text("#!/bin/sh\n")
    (path / ".profile").write_text("# the user's own\n")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    return Home(path, fakebin, mosquitto.port)


def secret(tmp_path: Path, name: str, password: str) -> Path:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def check_installed(home: Home) -> None:
    """What every install writes, with its modes."""
    assert stat.S_IMODE(home.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((home.state / "outbox").stat().st_mode) == 0o700
    for name in ("q4d-hook", "q4d-hook-deluge", "q4d-labeld"):
        wrapper = home.bin / name
        assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
        assert f"{home.tree}/bin/{name}" in wrapper.read_text()
    assert (home.tree / "q4d_seedbox" / "hook.py").read_bytes() == (
        SEEDBOX / "q4d_seedbox" / "hook.py"
    ).read_bytes()
    assert (home.tree / "install.sh").exists()
    assert (home.bin / "my-tool").exists()


def idempotent(home: Home, *args: str) -> None:
    before = listing(home.path, mtimes=True)
    home.install(*args)
    assert listing(home.path, mtimes=True) == before


# --- qBittorrent ----------------------------------------------------------------------


def test_qbittorrent(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    with QBittorrent(tmp_path / "qbt") as qbt:
        api = QbtApi(qbt.url, qbt.username, qbt.password)
        password = secret(tmp_path, "qbt", qbt.password)
        args = ["--client", "qbittorrent", "--client-url", qbt.url]
        args += ["--client-user", qbt.username, "--client-password-file", str(password)]
        home.install(*args)
        check_installed(home)
        prefs = api.preferences()
        command = f'"{home.bin}/q4d-hook" {QBT_ARGS}'
        assert (prefs["autorun_enabled"], prefs["autorun_program"]) == (True, command)
        config = home.config.read_text()
        assert "[labels]\nclient = qbittorrent\n" in config
        assert f"password_file = {password}\n" in config
        assert qbt.password not in config
        idempotent(home, *args)

        # The bridge's default hook_flush, through a login shell's `~`.
        flushed = subprocess.run(
            ["sh", "-c", "~/.local/bin/q4d-hook flush"],
            env=home.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (flushed.returncode, flushed.stdout) == (0, "sent 0, 0 left\n"), flushed.stderr

        home.uninstall()
        assert listing(home.path) == original
        prefs = api.preferences()
        assert (prefs["autorun_enabled"], prefs["autorun_program"]) == (False, "")

        # Someone else's program in qBittorrent's one slot: refused, then taken over
        # with --replace-hook, and given back by --uninstall.
        theirs = "/usr/local/bin/notify %N"
        api.set_preferences(autorun_enabled=True, autorun_program=theirs)
        refused = home.install(*args, expect=1)
        assert "already runs '/usr/local/bin/notify %N'" in refused.stderr
        assert api.preferences()["autorun_program"] == theirs
        home.install(*args, "--replace-hook")
        assert api.preferences()["autorun_program"] == command
        home.uninstall()
        prefs = api.preferences()
        assert (prefs["autorun_enabled"], prefs["autorun_program"]) == (True, theirs)
    assert listing(home.path) == original
    assert qbt.password not in home.output()


def test_password_from_stdin_and_a_wrong_one(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    with QBittorrent(tmp_path / "qbt") as qbt:
        args = ["--client", "qbittorrent", "--client-url", qbt.url]
        args += ["--client-user", qbt.username, "--client-password-file", "-"]
        wrong = home.install(*args, stdin="not-the-password\n", expect=1)
        assert "refused the login" in wrong.stderr
        assert "not-the-password" not in wrong.stdout + wrong.stderr
        home.install(*args, stdin=qbt.password + "\n")
        stored = home.config.parent / "qbittorrent.password"
        assert stored.read_text() == qbt.password + "\n"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert f"password_file = {stored}\n" in home.config.read_text()
        home.uninstall()
    assert listing(home.path) == original


# --- rTorrent -------------------------------------------------------------------------


def test_rtorrent(home: Home, tmp_path: Path) -> None:
    need("rtorrent")
    rc = home.path / ".rtorrent.rc"
    rc.write_text("# my rTorrent\nthrottle.global_down.max_rate.set_kb = 1000\n")
    original = listing(home.path)
    daemon = RTorrent(tmp_path / "rtorrent", unix=True)
    daemon.start()
    try:
        proxy = server_proxy(daemon.url, None, None, 5)
        args = ["--client", "rtorrent", "--client-url", daemon.url]
        home.install(*args)
        check_installed(home)
        command = (
            f"execute.nothrow.bg={home.bin}/q4d-hook,rtorrent,"
            "$d.hash=,$d.name=,$d.base_path=,$d.custom1=,$d.size_bytes="
        )
        text = rc.read_text()
        assert text.startswith("# my rTorrent\nthrottle.global_down.max_rate.set_kb = 1000\n")
        assert text.count("# BEGIN q4d-seedbox") == 1
        assert f'method.set_key = event.download.finished, q4d, "{command}"\n' in text
        # The running rTorrent has it too, without a restart.
        assert proxy.method.get("", "event.download.finished")["q4d"] == command
        assert f"[labels]\nclient = rtorrent\nurl = {daemon.url}\n" in home.config.read_text()
        idempotent(home, *args)
        home.uninstall()
        assert "q4d" not in proxy.method.list_keys("", "event.download.finished")
    finally:
        daemon.stop()
    assert listing(home.path) == original


# --- Transmission ---------------------------------------------------------------------


def test_transmission(home: Home, tmp_path: Path) -> None:
    need("transmission-daemon")
    original = listing(home.path)
    daemon = Transmission(tmp_path / "transmission")
    settings = daemon.workdir / "config" / "settings.json"
    password = secret(tmp_path, "tr", daemon.password)
    args = ["--client", "transmission", "--client-url", daemon.url]
    args += ["--client-user", daemon.username, "--client-password-file", str(password)]
    args += ["--transmission-config", str(settings.parent)]
    hook = str(home.bin / "q4d-hook")

    def session() -> tuple[object, object]:
        got = TransmissionRpc(daemon)("session-get")
        return got[TR_ENABLED], got[TR_FILENAME]

    def in_file() -> tuple[object, object]:
        data = json.loads(settings.read_text())
        return data.get(TR_ENABLED), data.get(TR_FILENAME)

    with daemon:
        # Running: set over RPC (the daemon would overwrite settings.json on exit).
        home.install(*args)
        check_installed(home)
        assert session() == (True, hook)
        assert in_file() == (True, hook)
        idempotent(home, *args)
    # transmission-daemon wrote its own settings.json on exit: the hook is still there.
    assert in_file() == (True, hook)
    home.uninstall()  # stopped: settings.json only
    assert in_file() == (False, "")
    assert listing(home.path) == original

    home.install(*args)  # stopped: settings.json, read when the daemon starts
    assert in_file() == (True, hook)
    with daemon:
        assert session() == (True, hook)
        home.uninstall()
        assert session() == (False, "")
    assert in_file() == (False, "")
    assert listing(home.path) == original


# --- Deluge ---------------------------------------------------------------------------


def test_deluge(home: Home, tmp_path: Path) -> None:
    need("deluged")
    need("deluge-web")
    original = listing(home.path)
    deluge = Deluge(tmp_path / "deluge")
    deluge.start()
    try:
        web = DelugeWeb(deluge.url)
        password = secret(tmp_path, "deluge", deluge.password)
        args = ["--client", "deluge", "--client-url", deluge.url]
        args += ["--client-password-file", str(password)]
        home.install(*args)
        check_installed(home)
        hook = str(home.bin / "q4d-hook-deluge")
        assert {"Execute", "Label"} <= set(web("core.get_enabled_plugins"))
        assert [c[1:] for c in web("execute.get_commands")] == [["complete", hook]]
        config = home.config.read_text()
        assert f"[labels]\nclient = deluge\nurl = {deluge.url}\npassword_file = {password}\n" in (
            config
        )
        idempotent(home, *args)
        assert len(web("execute.get_commands")) == 1
        home.uninstall()
        # The plugins it switched on are off again.
        wait_until(
            lambda: not {"Execute", "Label"} & set(web("core.get_enabled_plugins")),
            10,
            "the plugins to be disabled",
        )
    finally:
        deluge.stop()
    assert listing(home.path) == original


# --- paho-mqtt, Python 3.8, offline ---------------------------------------------------


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


def test_offline_then_vendored_paho_on_python38(
    home: Home, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    py38 = python38()  # has pip, not paho-mqtt
    sub = subscribe(COMPLETED)
    original = listing(home.path)
    offline = home.install("--python", py38, "--offline")
    assert "WARNING: paho-mqtt is not installed" in offline.stderr
    assert not (home.tree / "vendor").exists()
    # Without paho the completion is saved, and waits.
    data = tmp_path / "Show.S01E01.mkv"
    data.write_bytes(b"x" * 1000)
    saved = home.hook("qbittorrent", "a" * 40, data.name, str(data))
    assert saved.returncode == 0, saved.stderr
    assert len(list((home.state / "outbox").glob("*.msg"))) == 1

    wheels = paho_wheel(tmp_path / "wheels")
    home.install("--python", py38, "--wheel-dir", str(wheels.parent))
    assert (home.tree / "vendor" / "paho" / "mqtt" / "client.py").exists()
    assert py38 in (home.bin / "q4d-hook").read_text()
    idempotent(home, "--python", py38, "--wheel-dir", str(wheels.parent))
    flushed = home.hook("flush")
    assert (flushed.returncode, flushed.stdout) == (0, "sent 1, 0 left\n"), flushed.stderr
    assert sub.wait_count(COMPLETED, 1)[0].json()["path"] == str(data)
    checked = home.hook("test")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    home.uninstall()
    assert listing(home.path) == original


def test_wheel_without_pip(home: Home, tmp_path: Path) -> None:
    """A Python without pip unpacks the wheel itself."""
    venv = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    wheels = paho_wheel(tmp_path / "wheels")
    original = listing(home.path)
    home.install("--python", str(venv / "bin" / "python"), "--wheel-dir", str(wheels.parent))
    assert (home.tree / "vendor" / "paho" / "mqtt" / "client.py").exists()
    checked = home.hook("test")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    home.uninstall()
    assert listing(home.path) == original


# --- the uninstall keeps waiting events -----------------------------------------------


def test_uninstall_keeps_a_waiting_outbox_unless_purged(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    home.install("--broker-port", "1")  # nothing listens there: events stay in the outbox
    data = tmp_path / "Film.mkv"
    data.write_bytes(b"x" * 10)
    assert home.hook("qbittorrent", "b" * 40, data.name, str(data)).returncode == 0
    kept = home.uninstall()
    assert "kept" in kept.stderr and "1 completion(s)" in kept.stderr
    assert len(list((home.state / "outbox").glob("*.msg"))) == 1
    assert not home.tree.exists() and not home.config.exists()
    home.install("--broker-port", "1")
    home.uninstall("--purge")
    assert listing(home.path) == original


# --- the label daemon as a service ----------------------------------------------------


def fake(path: Path, script: str) -> None:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_systemd_user_units(home: Home) -> None:
    """systemctl is faked (no user manager runs here); the units it is handed are real
    and pass `systemd-analyze verify`."""
    calls = home.fakebin / "systemctl.log"
    fake(home.fakebin / "systemctl", f'echo "$*" >> "{calls}"\nexit 0\n')
    original = listing(home.path, mtimes=False)
    args = ["--client", "qbittorrent", "--no-wire", "--service", "systemd"]
    home.install(*args)
    units = home.path / ".config" / "systemd" / "user"
    labeld = (units / "q4d-labeld.service").read_text()
    assert f'ExecStart="{home.bin}/q4d-labeld"\n' in labeld
    assert "Restart=always" in labeld and "WantedBy=default.target" in labeld
    assert f'ExecStart="{home.bin}/q4d-hook" flush' in (units / "q4d-flush.service").read_text()
    assert "OnUnitActiveSec=10min" in (units / "q4d-flush.timer").read_text()
    assert calls.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        "--user enable --now q4d-labeld.service q4d-flush.timer",
        "--user try-restart q4d-labeld.service",
    ]
    analyze = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, sorted(units.glob("q4d-*")))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=home.path,
    )
    assert analyze.returncode == 0, analyze.stderr
    calls.unlink()
    idempotent(home, *args)
    assert "daemon-reload" not in calls.read_text()
    home.uninstall()
    assert "--user disable --now q4d-labeld.service q4d-flush.service q4d-flush.timer" in (
        calls.read_text()
    )
    assert listing(home.path) == original


@pytest.fixture
def crontab(home: Home) -> Iterator[Path]:
    """A crontab command keeping the user's table in a file (there is no cron here)."""
    table = home.fakebin / "crontab.txt"
    fake(
        home.fakebin / "crontab",
        f"""table="{table}"
case "$1" in
  -l) [ -f "$table" ] || {{ echo "no crontab for $USER" >&2; exit 1; }}; cat "$table" ;;
  -r) rm -f "$table" ;;
  -) cat > "$table" ;;
  *) exit 2 ;;
esac
""",
    )
    yield table
    # A daemon the test left running is stopped by its PID.
    pid_file = home.state / "labeld.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if "q4d-labeld" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            os.kill(pid, 15)


def test_crontab_watchdog(home: Home, crontab: Path) -> None:
    mine = "0 3 * * * /usr/bin/backup\n"
    crontab.write_text(mine)
    original = listing(home.path)
    args = ["--client", "qbittorrent", "--no-wire", "--service", "cron"]
    home.install(*args)
    table = crontab.read_text()
    watchdog = home.tree / "q4d-labeld-cron"
    assert table.startswith(mine)
    assert f"@reboot '{watchdog}'\n*/5 * * * * '{watchdog}'\n" in table
    assert f"*/10 * * * * '{home.bin}/q4d-hook' flush >/dev/null 2>&1\n" in table
    log = home.state / "labeld.log"
    wait_until(lambda: log.exists() and "listening on" in log.read_text(), 15, "q4d-labeld")
    pid = int((home.state / "labeld.pid").read_text())
    # The watchdog finds it running and starts no second one.
    again = subprocess.run([str(watchdog)], env=home.env(), timeout=30, check=False)
    assert again.returncode == 1
    idempotent(home, *args)
    assert int((home.state / "labeld.pid").read_text()) == pid
    home.uninstall()
    assert not Path(f"/proc/{pid}").exists()
    assert crontab.read_text() == mine
    assert listing(home.path) == original


# --- the installer itself -------------------------------------------------------------


def test_install_sh_is_shellcheck_clean() -> None:
    need("shellcheck")
    done = subprocess.run(
        ["shellcheck", str(INSTALL)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout


def test_marked_blocks() -> None:
    """.rtorrent.rc and crontab edits: one block, kept in place, removed exactly."""
    mine = "a = 1\n# comment\nb = 2\n"
    once = set_block(mine, "x = 1")
    assert once.startswith(mine) and once.count("# BEGIN q4d-seedbox") == 1
    assert set_block(once, "x = 1") == once
    assert remove_block(once) == mine
    # A block the user moved stays where it is when it is rewritten.
    moved = "top\n" + set_block("", "x = 1") + "bottom\n"
    rewritten = set_block(moved, "x = 2\ny = 3")
    assert rewritten.startswith("top\n# BEGIN") and rewritten.endswith(
        "# END q4d-seedbox\nbottom\n"
    )
    assert "x = 2\ny = 3\n" in rewritten and "x = 1" not in rewritten
    assert remove_block(rewritten) == "top\nbottom\n"
    assert set_block("no newline at the end", "x") == (
        "no newline at the end\n" + set_block("", "x")
    )
