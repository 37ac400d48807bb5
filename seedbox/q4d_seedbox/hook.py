"""`q4d-hook`: the torrent client's completion hook, `flush` and `test`.

    q4d-hook [--config FILE] qbittorrent "%I" "%N" "%F" "%L" "%G" "%Z" "%T"
    q4d-hook [--config FILE] rtorrent HASH NAME BASE_PATH [LABEL [SIZE]]
    q4d-hook [--config FILE] deluge TORRENT_ID NAME DOWNLOAD_LOCATION   (or bin/q4d-hook-deluge)
    q4d-hook [--config FILE] [transmission]        (reads TR_TORRENT_* from the environment)
    q4d-hook [--config FILE] flush                 (resend the outbox, oldest first)
    q4d-hook [--config FILE] test                  (check config and broker; publishes nothing)

A completion is written to the outbox first and only then published, so the exit
status is 0 whenever the event is safe on disk: a broker that is down is not the torrent
client's problem, and `flush` sends it later. Arguments after the client name are taken
verbatim (no option parsing), so a torrent called `--help` or `-rf` is just a name.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from . import __version__
from .config import Config, ConfigError, config_path, load
from .event import (
    PARSERS,
    Completion,
    HookUsageError,
    classic_line,
    disk_size,
    encode,
    from_transmission,
    payload,
)
from .outbox import Outbox
from .types_config import TypesConfigError, classify, load_types_config

log = logging.getLogger("q4d_seedbox.hook")

USAGE = (__doc__ or "").split("\n\n")[1]
CLIENT_COMMANDS = ("qbittorrent", "rtorrent", "deluge", "transmission")
# The sending thread gets the configured timeout; this much more covers its teardown.
GRACE = 0.5
SEQUENCE_WAIT = 1.0  # seconds a completion waits for another one to be numbered
LOG_MAX_BYTES = 1 << 20


def _setup_logging(cfg: Config | None) -> None:
    root = logging.getLogger("q4d_seedbox")
    root.setLevel(logging.INFO)
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s q4d-hook[%(process)d] %(levelname)s %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    if cfg is not None and cfg.hook.log_file is not None:
        # Torrent clients throw the hook's stderr away; the file is where a user looks.
        try:
            cfg.hook.log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                cfg.hook.log_file, maxBytes=LOG_MAX_BYTES, backupCount=1, encoding="utf-8"
            )
        except OSError as err:
            log.warning("cannot open log file %s: %s", cfg.hook.log_file, err)
        else:
            handler.setFormatter(fmt)
            root.addHandler(handler)


def _split_globals(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Only leading options are ours; everything from the command on is verbatim."""
    config: str | None = None
    rest = list(argv)
    while rest and rest[0].startswith("--config"):
        option = rest.pop(0)
        if option.startswith("--config="):
            config = option.split("=", 1)[1]
        elif option == "--config" and rest:
            config = rest.pop(0)
        else:
            raise HookUsageError(f"bad option {option!r}")
    return config, rest


def _type_code(cfg: Config, completion: Completion) -> str | None:
    """The Q4D type code, or None to let the bridge classify with its own rules."""
    if cfg.hook.types_config is None:
        return cfg.hook.default_type
    try:
        rules = load_types_config(cfg.hook.types_config)
    except (OSError, UnicodeDecodeError, TypesConfigError) as err:
        # A typo in Types.config must not lose the completion: send it untyped.
        log.error("types_config: %s; sending the event without a type", err)
        return None
    # Q4D's DEFAULT_TYPE, and the bridge's default when it has a Types.config.
    return classify(completion, rules, cfg.hook.default_type or "V")


def _completion(command: str, args: Sequence[str], environ: Mapping[str, str]) -> Completion:
    if command == "transmission":
        if args:
            raise HookUsageError("transmission: takes no arguments (it passes TR_TORRENT_*)")
        return from_transmission(environ)
    return PARSERS[command](args)


def run_completion(
    cfg: Config, command: str, args: Sequence[str], environ: Mapping[str, str]
) -> int:
    now = time.time()
    deadline = time.monotonic() + cfg.hook.timeout
    try:
        completion = _completion(command, args, environ)
    except HookUsageError as err:
        log.error("%s (see the wiring in the q4d seedbox README)", err)
        return 2
    for warning in completion.warnings:
        log.warning("%s", warning)
    # What is on disk is what the bridge will fetch; the client's figure is the fallback.
    size = disk_size(completion.path)
    if size is not None:
        completion = dataclasses.replace(completion, size=size)
    type_code = _type_code(cfg, completion)
    event = payload(completion, cfg.mqtt.seedbox_id, type_code, now)
    outbox = Outbox(cfg.hook.outbox)
    try:
        # Half the time at most, so a stuck sequence still leaves time to send.
        wait = max(0.0, min(SEQUENCE_WAIT, (deadline - time.monotonic()) / 2))
        with outbox.numbered(wait) as number:
            if number is None:
                log.warning("the outbox's sequence stayed locked; this event goes unnumbered")
            else:
                event.update(stream=number[0], seq=number[1])
            outbox.add(cfg.mqtt.completed_topic, encode(event))
        if cfg.hook.classic:
            line = classic_line(completion, type_code)
            if line is None:
                log.warning("classic Down not sent: the path holds a tab or line break")
            else:
                outbox.add(cfg.hook.down_topic, line)
    except OSError as err:
        log.error(
            "cannot write the outbox %s: %s; the completion is NOT saved", outbox.directory, err
        )
        return 1
    log.info("queued %s %r (type %s)", event["event_id"], completion.name, type_code)
    _send_in_time(cfg, outbox, deadline)
    return 0


def _send_in_time(cfg: Config, outbox: Outbox, deadline: float) -> None:
    """Publish what is in the outbox within the deadline. The work runs in a daemon
    thread that is abandoned at the deadline: name resolution has no timeout of its own,
    and nothing may hold the torrent client up longer than configured."""

    def work() -> None:
        try:
            from . import publish  # noqa: PLC0415 - the event is saved even without paho
        except ImportError as err:
            log.error("paho-mqtt >= 2.0 is missing (%s); the event waits in the outbox", err)
            return
        with outbox.locked(wait=max(0.0, deadline - time.monotonic())) as got:
            if not got:
                log.info("another sender holds the outbox; the event waits there")
                return
            result = publish.deliver(outbox, cfg.mqtt, deadline, cfg.hook.timeout)
        _report(result.sent, result.left, result.error)

    thread = threading.Thread(target=work, name="q4d-send", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()) + GRACE)
    if thread.is_alive():
        log.warning("publishing took longer than %gs; left in the outbox", cfg.hook.timeout)


def _report(sent: int, left: int, error: str | None) -> None:
    if error:
        log.warning("sent %d, %d left in the outbox for `q4d-hook flush`: %s", sent, left, error)
    else:
        log.info("sent %d, %d left in the outbox", sent, left)


def run_flush(cfg: Config) -> int:
    """Resend the outbox. A flush already running is enough: a second one exits 0."""
    try:
        from . import publish  # noqa: PLC0415 - keeps the hook importable without paho
    except ImportError as err:
        log.error("paho-mqtt >= 2.0 is missing: %s", err)
        return 1
    outbox = Outbox(cfg.hook.outbox)
    with outbox.locked(wait=0) as got:
        if not got:
            print("another sender is flushing the outbox")
            return 0
        result = publish.deliver(outbox, cfg.mqtt, float("inf"), cfg.hook.timeout)
    print(f"sent {result.sent}, {result.left} left" + (f": {result.error}" if result.error else ""))
    return 0 if result.left == 0 else 1


def run_test(cfg: Config) -> int:
    """Check everything a completion needs, without publishing anything."""
    ok = True

    def report(good: bool, what: str) -> None:
        nonlocal ok
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {what}")

    report(
        True, f"config {cfg.path} (seedbox {cfg.mqtt.seedbox_id}, topic {cfg.mqtt.completed_topic})"
    )
    if cfg.hook.types_config is not None:
        try:
            rules = load_types_config(cfg.hook.types_config)
            report(True, f"types_config {cfg.hook.types_config}: {len(rules)} rule(s)")
        except (OSError, UnicodeDecodeError, TypesConfigError) as err:
            report(False, f"types_config: {err}")
    outbox = Outbox(cfg.hook.outbox)
    try:
        probe = outbox.directory / f".probe-{os.getpid()}"
        outbox.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
        report(True, f"outbox {outbox.directory} writable, {len(outbox.pending())} waiting")
    except OSError as err:
        report(False, f"outbox {outbox.directory}: {err}")
    try:
        from . import publish  # noqa: PLC0415 - reported as a failed check, not a crash
    except ImportError as err:
        report(False, f"paho-mqtt >= 2.0 not importable: {err}")
        return 1
    try:
        publish.check(cfg.mqtt, time.monotonic() + cfg.hook.timeout)
        report(True, f"broker {cfg.mqtt.host}:{cfg.mqtt.port} accepted the connection")
    except publish.PublishError as err:
        report(False, f"broker {cfg.mqtt.host}:{cfg.mqtt.port}: {err}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args[:1] == ["--version"]:
        print(f"q4d-hook {__version__}")
        return 0
    try:
        explicit, rest = _split_globals(args)
    except HookUsageError as err:
        print(f"q4d-hook: {err}\n{USAGE}", file=sys.stderr)
        return 2
    # Transmission runs its script with no arguments at all.
    if not rest and ("TR_TORRENT_NAME" in env or "TR_TORRENT_HASH" in env):
        rest = ["transmission"]
    if not rest or rest[0] not in (*CLIENT_COMMANDS, "flush", "test"):
        print(f"q4d-hook: expected a command\n{USAGE}", file=sys.stderr)
        return 2
    command, command_args = rest[0], rest[1:]
    try:
        cfg = load(config_path(explicit, env))
    except ConfigError as err:
        _setup_logging(None)
        log.error("%s", err)
        return 1
    _setup_logging(cfg)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    if command == "flush":
        return run_flush(cfg)
    if command == "test":
        return run_test(cfg)
    return run_completion(cfg, command, command_args, env)


def main_deluge() -> int:
    """Deluge's Execute plugin runs one executable with its three arguments and no room
    for a command word, so bin/q4d-hook-deluge supplies it."""
    return main(["deluge", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
