"""install.sh's --service: systemd --user units, the crontab watchdog, and hosts with
neither (no crontab, or a crontab that no cron daemon reads), where q4d-labeld is the
user's to start and a reinstall restarts it. systemctl, crontab and the cron daemon are
faked (no user manager or cron can run here); q4d-labeld and the watchdog are real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seedbox.installing import (
    Home,
    advice,
    cron_daemon_seen,
    fake,
    idempotent,
    labelds,
    listing,
    paho_wheel,
)
from tests.seedbox.support import wait_until

pytestmark = pytest.mark.timeout(180)

LABELD_ARGS = ("--client", "qbittorrent", "--no-wire")  # nothing labelled: no client needed


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
def no_systemd(home: Home) -> None:
    """A systemctl whose user manager does not answer, as where none runs."""
    fake(home.fakebin / "systemctl", "echo 'Failed to connect to bus' >&2\nexit 1\n")


@pytest.fixture
def cron_daemon(tmp_path: Path) -> Iterator[None]:
    """A process named cron, which is all install.sh looks for."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    named = tmp_path / "cron"
    shutil.copy(sleep, named)
    proc = subprocess.Popen([str(named), "300"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def no_cron_daemon() -> None:
    if cron_daemon_seen() is not False:
        pytest.skip("a cron daemon runs here, or /proc hides other users' processes")


def labeld_log(home: Home) -> str:
    log = home.state / "labeld.log"
    return log.read_text() if log.exists() else ""


@pytest.mark.usefixtures("no_systemd", "cron_daemon")
def test_crontab_watchdog(home: Home, crontab: Path) -> None:
    mine = "0 3 * * * /usr/bin/backup\n"
    crontab.write_text(mine)
    original = listing(home.path)
    args = [*LABELD_ARGS, "--service", "auto"]
    done = home.install(*args)
    assert "service: crontab runs 'q4d-hook flush' every 10 minutes" in done.stderr
    table = crontab.read_text()
    watchdog = home.tree / "q4d-labeld-cron"
    assert table.startswith(mine)
    assert f"@reboot '{watchdog}'\n*/5 * * * * '{watchdog}'\n" in table
    assert f"*/10 * * * * '{home.bin}/q4d-hook' flush >/dev/null 2>&1\n" in table
    wait_until(lambda: "listening on" in labeld_log(home), 15, "q4d-labeld")
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


@pytest.mark.usefixtures("no_cron_daemon")
def test_a_crontab_asked_for_where_no_cron_daemon_runs(home: Home, crontab: Path) -> None:
    original = listing(home.path)
    done = home.install(*LABELD_ARGS, "--service", "cron")
    said = " ".join(done.stderr.split())
    assert "crontab runs" not in said
    assert (
        "WARNING: no cron daemon runs here: the crontab lines do nothing until one does."
        " q4d-labeld runs now, but nothing restarts it. Nothing flushes the outbox on a"
        " schedule. The bridge sends waiting completions each time it connects"
    ) in said
    assert f"To send them now: '{home.bin}/q4d-hook' flush" in said
    assert "# BEGIN q4d-seedbox" in crontab.read_text()  # in place for when cron runs
    wait_until(lambda: "listening on" in labeld_log(home), 15, "q4d-labeld")
    home.uninstall()
    assert not labelds(home)
    assert listing(home.path) == original


def bare_python(tmp_path: Path) -> str:
    """Another Python (a venv without pip or paho: install.sh vendors paho for it)."""
    venv = tmp_path / "other-python"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    return str(venv / "bin" / "python")


@pytest.mark.usefixtures("no_systemd")
@pytest.mark.parametrize("host", ["no crontab", "a crontab but no cron daemon"])
def test_no_service_manager(
    home: Home, tmp_path: Path, request: pytest.FixtureRequest, host: str
) -> None:
    if host == "no crontab":
        if shutil.which("crontab", path=home.env()["PATH"]):
            pytest.skip("this machine has a crontab command")
        why = "systemctl --user does not work, and there is no crontab command"
    else:
        request.getfixturevalue("no_cron_daemon")
        table = request.getfixturevalue("crontab")
        table.write_text("0 3 * * * /usr/bin/backup\n")
        why = "systemctl --user does not work, and crontab exists but no cron daemon runs"
    original = listing(home.path)
    args = [*LABELD_ARGS, "--service", "auto"]
    done = home.install(*args)
    said = " ".join(done.stderr.split())
    assert f"WARNING: no service manager here ({why}): nothing restarts q4d-labeld" in said
    assert f"To send them now: '{home.bin}/q4d-hook' flush" in said
    assert "crontab runs" not in said
    assert not labelds(home)
    if host != "no crontab":
        assert table.read_text() == "0 3 * * * /usr/bin/backup\n"

    # The command it prints starts the daemon, detached from the shell that ran it.
    start = advice(done.stderr, "start q4d-labeld now, and again after a reboot")
    assert start == (f"nohup '{home.bin}/q4d-labeld' >>'{home.state}/labeld.log' 2>&1 </dev/null &")
    assert home.shell(start).returncode == 0
    wait_until(lambda: "listening on" in labeld_log(home), 15, "q4d-labeld")
    [(first, python)] = labelds(home).items()
    assert python == sys.executable

    same = home.install(*args)
    assert f"service: q4d-labeld runs (pid {first}); nothing restarts it" in same.stderr
    assert labelds(home) == {first: sys.executable}

    # Another --python: the running daemon is restarted under it.
    other = bare_python(tmp_path)
    wheels = paho_wheel(tmp_path / "wheels").parent
    switched = home.install(*args, "--python", other, "--wheel-dir", str(wheels))
    assert f"service: stopped q4d-labeld (pid {first})" in switched.stderr
    assert f"service: restarted q4d-labeld with {other}" in switched.stderr
    [(second, python)] = labelds(home).items()
    assert (second != first, python) == (True, other)
    wait_until(lambda: labeld_log(home).count("listening on") == 2, 15, "the restart")

    home.uninstall()
    assert not labelds(home)
    assert listing(home.path) == original
