"""The parts of `install.sh` that talk to torrent clients or edit structured files.

    python3 -m q4d_seedbox.installer wire --state FILE --client NAME --hook PATH [options]
    python3 -m q4d_seedbox.installer unwire --state FILE
    python3 -m q4d_seedbox.installer block --begin LINE --end LINE [--set FILE]   (stdin -> stdout)
    python3 -m q4d_seedbox.installer has-paho --root TREE
    python3 -m q4d_seedbox.installer unpack-wheel --wheel-dir DIR --target DIR

`wire` hooks q4d-hook into one client and records in the state file (JSON, no secrets)
what it found before, so `unwire` puts exactly that back:

- qBittorrent: WebUI API `app/setPreferences` (`autorun_enabled`, `autorun_program`).
- rTorrent: a marked block in `.rtorrent.rc`, and the same `method.set_key` over
  XML-RPC when a URL is given, so a running rTorrent has it at once.
- Transmission: `session-set` over RPC when the daemon answers (it would otherwise
  overwrite `settings.json` with its own copy when it exits), and `settings.json`.
- Deluge: the Execute plugin through the web UI's JSON-RPC (`deluge-web`).

Passwords are read from files and never printed or stored in the state file.
Exit status: 0 done, 1 failed (stderr says why), 3 refused: another program already
holds the client's only completion-program slot (`--replace` takes it over).
"""

from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .clients.rtorrent import server_proxy

TIMEOUT = 10.0
REFUSED = 3
QBT_ARGS = '"%I" "%N" "%F" "%L" "%G" "%Z" "%T"'
RTORRENT_ARGS = "$d.hash=,$d.name=,$d.base_path=,$d.custom1=,$d.size_bytes="
RTORRENT_KEY = "q4d"
RTORRENT_EVENT = "event.download.finished"
BLOCK_BEGIN = "# BEGIN q4d-seedbox: added by install.sh, removed by install.sh --uninstall"
BLOCK_END = "# END q4d-seedbox"
TR_ENABLED = "script-torrent-done-enabled"
TR_FILENAME = "script-torrent-done-filename"


class InstallError(Exception):
    pass


class Refused(InstallError):
    pass


def say(message: str) -> None:
    print(f"q4d-install: {message}", file=sys.stderr)


def is_q4d_program(program: str) -> bool:
    """A completion program some q4d install set (this one or an older one)."""
    return "q4d-hook" in program


def read_secret(path: str | None) -> str | None:
    if not path:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InstallError(
            f"cannot read the password file {path}: {err.__class__.__name__}"
        ) from None
    return lines[0] if lines else ""


# --- marked blocks (.rtorrent.rc, crontab) ---------------------------------------------


def remove_block(text: str, begin: str = BLOCK_BEGIN, end: str = BLOCK_END) -> str:
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if not inside and bare == begin:
            inside = True
        elif inside:
            if bare == end:
                inside = False
        else:
            out.append(line)
    return "".join(out)


def set_block(text: str, body: str, begin: str = BLOCK_BEGIN, end: str = BLOCK_END) -> str:
    """text with exactly one marked block holding body, at the end (or where it was)."""
    block = f"{begin}\n{body.rstrip(chr(10))}\n{end}\n"
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == begin]
    if starts:
        rest = remove_block("".join(lines[starts[0] :]), begin, end)
        return "".join(lines[: starts[0]]) + block + rest
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


def write_if_changed(path: Path, text: str, mode: int | None = None) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    temp = path.with_name(f".{path.name}.q4d-install")
    temp.write_text(text, encoding="utf-8")
    if mode is not None:
        temp.chmod(mode)
    elif path.exists():
        temp.chmod(path.stat().st_mode & 0o7777)
    temp.replace(path)
    return True


# --- HTTP -------------------------------------------------------------------------------


class Web:
    """urllib with a cookie jar; every HTTP status is an answer, transport errors raise."""

    def __init__(self) -> None:
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def request(
        self, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(  # noqa: S310 - http(s) URLs given to the installer
            url, data=body, headers=headers or {}, method="GET" if body is None else "POST"
        )
        try:
            with self.opener.open(request, timeout=TIMEOUT) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, dict(err.headers), err.read()
        except OSError as err:
            raise InstallError(f"cannot reach {url}: {getattr(err, 'reason', err)}") from None


# --- qBittorrent ------------------------------------------------------------------------


class QBittorrentApi:
    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        self.base = url.rstrip("/")
        self.web = Web()
        self.headers = {"Referer": self.base}
        if user:
            status, _, body = self._post("auth/login", {"username": user, "password": password})
            if status not in (200, 204) or body.strip() not in (b"", b"Ok."):
                raise InstallError(
                    f"qBittorrent at {self.base} refused the login for {user!r} "
                    "(wrong --client-user/--client-password-file, or the IP is banned)"
                )

    def _post(self, endpoint: str, fields: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self.headers)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(fields).encode()
        return self.web.request(f"{self.base}/api/v2/{endpoint}", body, headers)

    def preferences(self) -> dict[str, Any]:
        status, _, body = self.web.request(
            f"{self.base}/api/v2/app/preferences", None, self.headers
        )
        if status != 200:
            raise InstallError(
                f"qBittorrent app/preferences: HTTP {status} (log in with --client-user "
                "and --client-password-file)"
            )
        prefs: dict[str, Any] = json.loads(body)
        return prefs

    def set_preferences(self, prefs: dict[str, Any]) -> None:
        status, _, body = self._post("app/setPreferences", {"json": json.dumps(prefs)})
        if status != 200:
            raise InstallError(f"qBittorrent app/setPreferences: HTTP {status} {body[:200]!r}")


def qbt_command(hook: str) -> str:
    if '"' in hook:
        raise InstallError(f"the hook path {hook!r} contains '\"', which qBittorrent cannot run")
    return f'"{hook}" qbittorrent {QBT_ARGS}'


def wire_qbittorrent(state: dict[str, Any], args: argparse.Namespace, old: dict[str, Any]) -> None:
    api = QBittorrentApi(args.url, args.user, read_secret(args.password_file))
    command = qbt_command(args.hook)
    prefs = api.preferences()
    enabled = bool(prefs.get("autorun_enabled"))
    program = str(prefs.get("autorun_program") or "")
    previous = old.get("previous") if old.get("client") == "qbittorrent" else None
    if previous is None:
        if enabled and program and not is_q4d_program(program) and not args.replace:
            raise Refused(
                f"qBittorrent already runs {program!r} when a torrent finishes, and it has "
                "one such slot. Re-run with --replace-hook (--uninstall puts it back), or "
                "call q4d-hook from that program (docs/seedbox.md)."
            )
        previous = (
            {"autorun_enabled": False, "autorun_program": ""}
            if is_q4d_program(program)
            else {"autorun_enabled": enabled, "autorun_program": program}
        )
    state.update(client="qbittorrent", command=command, previous=previous)
    if enabled and program == command:
        say("qBittorrent: the hook is wired already")
        return
    api.set_preferences({"autorun_enabled": True, "autorun_program": command})
    check = api.preferences()
    if check.get("autorun_program") != command or not check.get("autorun_enabled"):
        raise InstallError("qBittorrent did not keep the autorun preferences")
    say(f"qBittorrent: runs {command} when a torrent finishes")


def unwire_qbittorrent(state: dict[str, Any]) -> None:
    api = QBittorrentApi(state["url"], state.get("user"), read_secret(state.get("password_file")))
    prefs = api.preferences()
    if prefs.get("autorun_program") != state["command"]:
        say("qBittorrent: its completion program is not q4d's any more; left as it is")
        return
    api.set_preferences(state["previous"])
    say("qBittorrent: completion program restored")


# --- rTorrent ---------------------------------------------------------------------------


def rtorrent_command(hook: str) -> str:
    if any(c in hook for c in ',"\\\n') or hook != hook.strip() or " " in hook:
        raise InstallError(f"rTorrent cannot run a hook path with spaces, ',' or quotes: {hook!r}")
    return f"execute.nothrow.bg={hook},rtorrent,{RTORRENT_ARGS}"


def _rtorrent_live(url: str, user: str | None, password: str | None, command: str) -> None:
    proxy = server_proxy(url, user, password, TIMEOUT)
    try:
        if command:
            proxy.method.set_key("", RTORRENT_EVENT, RTORRENT_KEY, command)
        else:
            proxy.method.set_key("", RTORRENT_EVENT, RTORRENT_KEY)
    except (OSError, xmlrpc.client.Error) as err:
        raise InstallError(f"rTorrent at {url}: {err}") from None


def wire_rtorrent(state: dict[str, Any], args: argparse.Namespace, old: dict[str, Any]) -> None:
    command = rtorrent_command(args.hook)
    rc = Path(args.rtorrent_rc)
    existed = rc.exists()
    text = rc.read_text(encoding="utf-8") if existed else ""
    line = f'method.set_key = {RTORRENT_EVENT}, {RTORRENT_KEY}, "{command}"'
    created = old.get("rc_created", not existed) if old.get("rc") == str(rc) else not existed
    state.update(client="rtorrent", command=command, rc=str(rc), rc_created=created)
    if write_if_changed(rc, set_block(text, line)):
        say(f"rTorrent: added the hook to {rc} (read when rTorrent starts)")
    else:
        say(f"rTorrent: {rc} has the hook already")
    if args.url:
        _rtorrent_live(args.url, args.user, read_secret(args.password_file), command)
        state["live"] = True
        say(f"rTorrent: set it in the running rTorrent too ({args.url})")


def unwire_rtorrent(state: dict[str, Any]) -> None:
    rc = Path(state["rc"])
    if rc.exists():
        text = remove_block(rc.read_text(encoding="utf-8"))
        if not text and state.get("rc_created"):
            rc.unlink()
        else:
            write_if_changed(rc, text)
        say(f"rTorrent: removed the hook from {rc}")
    if state.get("live"):
        try:
            password = read_secret(state.get("password_file"))
            _rtorrent_live(state["url"], state.get("user"), password, "")
            say("rTorrent: removed it from the running rTorrent")
        except InstallError as err:
            say(f"rTorrent: {err}; restart rTorrent to drop the hook")


# --- Transmission -----------------------------------------------------------------------


class TransmissionRpc:
    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        self.url = url
        self.web = Web()
        self.headers = {"Content-Type": "application/json", "X-Transmission-Session-Id": ""}
        if user:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def __call__(self, method: str, **arguments: Any) -> dict[str, Any]:
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(2):
            status, headers, answer = self.web.request(self.url, body, self.headers)
            if status != 409:
                break
            session = {k.lower(): v for k, v in headers.items()}.get("x-transmission-session-id")
            self.headers["X-Transmission-Session-Id"] = session or ""
        if status == 401:
            raise InstallError(
                "Transmission refused the RPC login: check --client-user/--client-password-file"
            )
        if status != 200:
            raise InstallError(f"Transmission RPC {method}: HTTP {status}")
        data = json.loads(answer)
        if data.get("result") != "success":
            raise InstallError(f"Transmission RPC {method}: {data.get('result')}")
        result: dict[str, Any] = data.get("arguments") or {}
        return result


def _tr_reachable(url: str | None, user: str | None, password: str | None) -> Any:
    """An RPC client if the daemon answers at url; None if nothing listens there."""
    if not url:
        return None
    rpc = TransmissionRpc(url, user, password)
    try:
        rpc("session-get")
    except InstallError as err:
        if "cannot reach" in str(err):
            return None
        raise
    return rpc


def wire_transmission(state: dict[str, Any], args: argparse.Namespace, old: dict[str, Any]) -> None:
    hook = args.hook
    settings = Path(args.transmission_settings)
    rpc = _tr_reachable(args.url, args.user, read_secret(args.password_file))
    data: dict[str, Any] = {}
    if settings.exists():
        data = json.loads(settings.read_text(encoding="utf-8"))
    source = rpc("session-get") if rpc is not None else data
    enabled, program = source.get(TR_ENABLED), source.get(TR_FILENAME)
    previous = old.get("previous") if old.get("client") == "transmission" else None
    if previous is None:
        if enabled and program and not is_q4d_program(program) and not args.replace:
            raise Refused(
                f"Transmission already runs {program!r} when a torrent is done, and it has "
                "one such slot. Re-run with --replace-hook (--uninstall puts it back), or "
                "call q4d-hook from that script (docs/seedbox.md)."
            )
        previous = (
            {TR_ENABLED: False, TR_FILENAME: ""}
            if program and is_q4d_program(program)
            else {TR_ENABLED: enabled, TR_FILENAME: program}
        )
    state.update(client="transmission", command=hook, settings=str(settings), previous=previous)
    wanted = {TR_ENABLED: True, TR_FILENAME: hook}
    if rpc is not None:
        rpc("session-set", **wanted)
        state["live"] = True
        say(f"Transmission: set the done script in the running daemon ({args.url})")
    if settings.exists() or settings.parent.is_dir():
        data.update(wanted)
        text = json.dumps(data, indent=4, sort_keys=True) + "\n"
        if data != (json.loads(settings.read_text()) if settings.exists() else None):
            write_if_changed(settings, text)
            say(f"Transmission: set the done script in {settings}")
        if rpc is None:
            say(
                "Transmission: transmission-daemon rewrites settings.json when it exits. "
                "If it is running now, make it read the file first: "
                "kill -HUP $(pidof transmission-daemon)"
            )
    elif rpc is None:
        raise InstallError(
            f"no {settings} and no Transmission RPC at {args.url}: "
            "pass --transmission-config DIR (the daemon's -g directory)"
        )


def unwire_transmission(state: dict[str, Any]) -> None:
    previous = state["previous"]
    if state.get("url"):
        try:
            rpc = _tr_reachable(
                state["url"], state.get("user"), read_secret(state.get("password_file"))
            )
        except InstallError as err:
            say(f"Transmission: {err}")
            rpc = None
        if rpc is not None and rpc("session-get").get(TR_FILENAME) == state["command"]:
            rpc(
                "session-set",
                **{
                    TR_ENABLED: bool(previous.get(TR_ENABLED)),
                    TR_FILENAME: previous.get(TR_FILENAME) or "",
                },
            )
            say("Transmission: done script restored in the running daemon")
    settings = Path(state["settings"])
    if settings.exists():
        data = json.loads(settings.read_text(encoding="utf-8"))
        if data.get(TR_FILENAME) == state["command"]:
            for key in (TR_ENABLED, TR_FILENAME):
                if previous.get(key) is None:
                    data.pop(key, None)
                else:
                    data[key] = previous[key]
            write_if_changed(settings, json.dumps(data, indent=4, sort_keys=True) + "\n")
            say(f"Transmission: done script restored in {settings}")


# --- Deluge -----------------------------------------------------------------------------


class DelugeWeb:
    def __init__(self, url: str, password: str | None) -> None:
        self.url = url
        self.web = Web()
        self.ids = 0
        if self.call("auth.login", password or "") is not True:
            raise InstallError("Deluge web refused the login: check --client-password-file")
        if not self.call("web.connected"):
            hosts = self.call("web.get_hosts") or []
            if not hosts:
                raise InstallError("Deluge web has no daemon in its connection manager")
            self.call("web.connect", hosts[0][0])
            _wait(lambda: bool(self.call("web.connected")), "Deluge web to reach deluged")

    def call(self, method: str, *params: Any) -> Any:
        self.ids += 1
        body = json.dumps({"method": method, "params": list(params), "id": self.ids}).encode()
        status, _, answer = self.web.request(self.url, body, {"Content-Type": "application/json"})
        if status != 200:
            raise InstallError(f"Deluge {method}: HTTP {status}")
        data = json.loads(answer)
        if data.get("error"):
            message = str(data["error"].get("message", "")).strip().splitlines()
            raise InstallError(f"Deluge {method}: {message[-1] if message else data['error']}")
        return data.get("result")

    def plugins(self) -> list[str]:
        return list(self.call("core.get_enabled_plugins") or [])

    def set_plugin(self, name: str, enabled: bool) -> None:
        self.call("core.enable_plugin" if enabled else "core.disable_plugin", name)
        _wait(lambda: (name in self.plugins()) == enabled, f"Deluge to switch {name}")


def _wait(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise InstallError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wire_deluge(state: dict[str, Any], args: argparse.Namespace, old: dict[str, Any]) -> None:
    web = DelugeWeb(args.url, read_secret(args.password_file))
    enabled_by_us = list(old.get("plugins_enabled", [])) if old.get("client") == "deluge" else []
    wanted = ["Execute"] + (["Label"] if args.labels else [])
    for plugin in wanted:
        if plugin not in web.plugins():
            web.set_plugin(plugin, True)
            enabled_by_us.append(plugin)
            say(f"Deluge: enabled the {plugin} plugin")
    state.update(client="deluge", command=args.hook, plugins_enabled=sorted(set(enabled_by_us)))
    commands = web.call("execute.get_commands") or []
    if any(c[1] == "complete" and c[2] == args.hook for c in commands):
        say("Deluge: the Execute plugin runs the hook already")
        return
    web.call("execute.add_command", "complete", args.hook)
    # Execute registers its event handlers when it is enabled, one per event kind that
    # has a command; with no "complete" command before, it needs enabling again.
    if not any(c[1] == "complete" for c in commands):
        web.set_plugin("Execute", False)
        web.set_plugin("Execute", True)
    say(f"Deluge: the Execute plugin runs {args.hook} when a torrent completes")


def unwire_deluge(state: dict[str, Any]) -> None:
    web = DelugeWeb(state["url"], read_secret(state.get("password_file")))
    if "Execute" in web.plugins():
        for command in web.call("execute.get_commands") or []:
            if command[1] == "complete" and command[2] == state["command"]:
                web.call("execute.remove_command", command[0])
                say("Deluge: removed the hook from the Execute plugin")
    for plugin in state.get("plugins_enabled", []):
        if plugin == "Execute" and web.call("execute.get_commands"):
            continue  # commands of your own: keep the plugin on
        if plugin in web.plugins():
            web.set_plugin(plugin, False)
            say(f"Deluge: disabled the {plugin} plugin again")


# --- state, wire, unwire ----------------------------------------------------------------

WIRE = {
    "qbittorrent": wire_qbittorrent,
    "rtorrent": wire_rtorrent,
    "transmission": wire_transmission,
    "deluge": wire_deluge,
}
UNWIRE = {
    "qbittorrent": unwire_qbittorrent,
    "rtorrent": unwire_rtorrent,
    "transmission": unwire_transmission,
    "deluge": unwire_deluge,
}


def load_state(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return loaded


def save_state(path: Path, state: dict[str, Any]) -> None:
    write_if_changed(path, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)


def wire(args: argparse.Namespace) -> None:
    path = Path(args.state)
    old = load_state(path)
    connection = {"url": args.url, "user": args.user, "password_file": args.password_file}
    if old and (old.get("client") != args.client or old.get("command_hook") != args.hook):
        unwire_state(old)
        old = {}
    state: dict[str, Any] = {"command_hook": args.hook, **connection}
    WIRE[args.client](state, args, old)
    save_state(path, state)


def unwire_state(state: dict[str, Any]) -> None:
    client = state.get("client")
    if client in UNWIRE:
        UNWIRE[client](state)


def unwire(args: argparse.Namespace) -> None:
    path = Path(args.state)
    unwire_state(load_state(path))
    if path.exists():
        path.unlink()


# --- paho-mqtt --------------------------------------------------------------------------


def has_paho(root: str) -> bool:
    """paho-mqtt >= 2 as the bin/ wrappers see it (vendor/ first)."""
    sys.path[:0] = [root, str(Path(root) / "vendor")]
    try:
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def unpack_wheel(wheel_dir: str, target: str) -> str:
    """Unpack the newest paho-mqtt 2.x wheel (pure Python) into target, without pip."""
    wheels = sorted(Path(wheel_dir).glob("paho_mqtt-2.*-py3-none-any.whl"))
    if not wheels:
        raise InstallError(f"no paho_mqtt-2.*-py3-none-any.whl in {wheel_dir}")
    with zipfile.ZipFile(wheels[-1]) as archive:
        for name in archive.namelist():
            if name.startswith("/") or ".." in name.split("/"):
                raise InstallError(f"{wheels[-1].name}: unsafe member {name!r}")
        archive.extractall(target)
    return wheels[-1].name


# --- command line -----------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m q4d_seedbox.installer")
    sub = parser.add_subparsers(dest="action", required=True)
    w = sub.add_parser("wire")
    w.add_argument("--state", required=True)
    w.add_argument("--client", required=True, choices=sorted(WIRE))
    w.add_argument("--hook", required=True)
    w.add_argument("--url")
    w.add_argument("--user")
    w.add_argument("--password-file")
    w.add_argument("--rtorrent-rc")
    w.add_argument("--transmission-settings")
    w.add_argument("--labels", action="store_true")
    w.add_argument("--replace", action="store_true")
    u = sub.add_parser("unwire")
    u.add_argument("--state", required=True)
    b = sub.add_parser("block")
    b.add_argument("--set", dest="body_file")
    p = sub.add_parser("has-paho")
    p.add_argument("--root", required=True)
    k = sub.add_parser("unpack-wheel")
    k.add_argument("--wheel-dir", required=True)
    k.add_argument("--target", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if args.action == "wire":
            wire(args)
        elif args.action == "unwire":
            unwire(args)
        elif args.action == "block":
            text = sys.stdin.read()
            if args.body_file:
                sys.stdout.write(set_block(text, Path(args.body_file).read_text(encoding="utf-8")))
            else:
                sys.stdout.write(remove_block(text))
        elif args.action == "has-paho":
            return 0 if has_paho(args.root) else 1
        elif args.action == "unpack-wheel":
            say(f"unpacked {unpack_wheel(args.wheel_dir, args.target)}")
    except Refused as err:
        say(str(err))
        return REFUSED
    except (InstallError, OSError, ValueError) as err:
        say(f"{err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
