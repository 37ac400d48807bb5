"""The transfers card in a real Home Assistant, checked in headless Chromium.

    .venv/bin/python scripts/demo_card.py [--screenshots DIR] [--timeout S]

tests/demo/test_card.py runs it; ``--screenshots docs/images`` refreshes the pictures
in docs/home-assistant.md. Everything listens on 127.0.0.1; each process is recorded by
PID in demo/card-run/state.json (``--run``) and stopped at the end:

* Mosquitto; a throwaway sshd standing in for the seedbox, with the "downloads";
* the bridge: SFTP, one transfer at a time at 4 MiB/s, no torrent client;
* Home Assistant with the q4d dashboard (scripts/demo_hass.py), set up as in the demo;
* headless Chromium (ConfinedBrowser: loopback only) logged in on the dashboard.

With the page open, completion events are published as the seedbox's hook publishes
them. Each new item must show on the card within 2 s of its event ("appeared after N
ms"); each of the card's buttons must send its action, seen on the bridge's command
topic, and the item (or the queue) must change as asked; the card must render in the
light and the dark theme. Screenshots of the card: card-desktop.png (1280 px wide
window), card-phone.png and card-phone-dark.png (390 px). Exit 0 when all holds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.demo import (  # noqa: E402
    DEMO,
    DemoError,
    Processes,
    TimedCheck,
    run_check,
    say,
)
from scripts.demo_hass import MDNS_SOCKETS, Dashboard, DemoHass  # noqa: E402
from tests.helpers.services import (  # noqa: E402
    LOOPBACK,
    Q4D_BROKER_SETTINGS,
    Mosquitto,
    SshServer,
    free_port,
)

BRIDGE_ID = "card"
BRIDGE_NAME = "q4d"  # the dashboard's entity IDs are those of a bridge named q4d
SEEDBOX_ID = "box"
APPEAR_WITHIN = 2.0  # seconds from the event to the item on the card
MiB = 1024 * 1024
CARD = "q4d-transfers-card"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# name -> (category, size in bytes; None: no such file on the seedbox)
DONE = "Card.Sample.2024.mkv"
MISSING = "Missing.Upload.mkv"
BIG = "Big.Buck.Card.2024.2160p.mkv"
EPISODES = [f"Card.Show.S01E0{n}.mkv" for n in (1, 2, 3)]
FILES: dict[str, tuple[str, int | None]] = {
    DONE: ("movies", 4 * MiB),
    MISSING: ("movies", None),
    BIG: ("movies", 256 * MiB),
    **dict.fromkeys(EPISODES, ("tv", MiB)),
}

# Resolves window.q4dRowShown with the milliseconds until a row naming the item is in
# the card (checked every frame), or null after the time limit.
WATCH_FOR_ROW = """(card, [name, limit]) => {
  const start = performance.now();
  window.q4dRowShown = new Promise((resolve) => {
    const look = () => {
      const elapsed = performance.now() - start;
      const rows = [...card.shadowRoot.querySelectorAll(".row")];
      if (rows.some((row) => row.textContent.includes(name))) resolve(elapsed);
      else if (elapsed > limit) resolve(null);
      else requestAnimationFrame(look);
    };
    look();
  });
}"""


class BridgeLog:
    """What the bridge says and is told over MQTT: its status, its items (latest
    payload by name) and every command sent to it (the command log)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 (the venv only)
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.online = False
        self.items: dict[str, dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        base = f"q4d/bridge/{BRIDGE_ID}"
        topics = [f"{base}/status", f"{base}/command", f"{base}/item/+"]
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise DemoError("could not subscribe to the broker")

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if not message.payload:
            return
        body = json.loads(message.payload)
        with self.lock:
            if message.topic.endswith("/status"):
                self.online = body.get("state") == "online"
            elif message.topic.endswith("/command"):
                self.commands.append(body)
            else:
                self.items[body["name"]] = body

    def item(self, name: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.items.get(name, {}))

    def publish_completed(self, path: Path, category: str, size: int | None) -> None:
        event: dict[str, Any] = {"v": 1, "event_id": f"card-{uuid4().hex}", "path": str(path),
                                 "category": category}  # fmt: skip
        if size is not None:
            event["size"] = size
        info = self.client.publish(f"q4d/seedbox/{SEEDBOX_ID}/completed", json.dumps(event), 1)
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CardCheck(TimedCheck):
    def __init__(self, run: Path, screenshots: Path, timeout: float) -> None:
        self.run = run
        self.screenshots = screenshots
        super().__init__(timeout)
        self.procs = Processes(run)
        self.log: BridgeLog | None = None
        self.dashboard: Dashboard | None = None
        self.appeared: dict[str, float] = {}

    # --- set-up ------------------------------------------------------------------------

    def start(self) -> None:
        if self.run.exists():
            shutil.rmtree(self.run)
        self.procs.logs.mkdir(parents=True)
        broker = Mosquitto(self.run / "mosquitto", extra_config=Q4D_BROKER_SETTINGS)
        self.procs.start("mosquitto", broker._argv(), ports=(broker.port,))
        hass = self.hass = DemoHass(
            self.run / "hass",
            free_port(),
            dashboard=ROOT / "dashboards" / "q4d.yaml",
            integration=ROOT / "custom_components" / "q4d",
        )
        hass.write_config()
        self.procs.start("home-assistant", hass.argv(sys.executable), allowed=MDNS_SOCKETS)
        sshd = SshServer(self.run / "sshd")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        sshd._check_config()
        self.procs.start("sshd", sshd._argv(), ports=(sshd.port,))
        self.downloads = self.run / "downloads"
        self.downloads.mkdir()
        for name, (_, size) in FILES.items():
            if size is not None:
                with (self.downloads / name).open("wb") as payload:
                    payload.truncate(size)  # sparse: no disk space, read back as zeros
        log = self.log = BridgeLog(broker.port)
        config = self.write_bridge_config(broker.port, sshd)
        bridge = str(Path(sys.executable).parent / "q4d-bridge")
        self.procs.start("q4d-bridge", [bridge, "run", "--config", str(config)],
                         ready=lambda: log.online, timeout=30)  # fmt: skip
        self.until(hass.http_ready, "Home Assistant's HTTP API")
        hass.set_up(broker.port, BRIDGE_ID, self.left("Home Assistant's set-up"))
        say(f"Home Assistant {hass.url}: the q4d bridge set up; opening {hass.dashboard_url}")
        self.dashboard = Dashboard(
            hass, self.left("the browser"), request_log=self.procs.logs / "chromium-requests.jsonl"
        )
        self.page = self.dashboard.page
        self.page.set_viewport_size(DESKTOP)
        self.card.get_by_text("Nothing to transfer.").wait_for()
        say("card: rendered, subscribed, nothing to transfer")

    def write_bridge_config(self, broker_port: int, sshd: SshServer) -> Path:
        import yaml  # noqa: PLC0415 (the venv only)

        library = self.run / "library"
        config = {
            "bridge": {"id": BRIDGE_ID, "name": BRIDGE_NAME},
            "data_dir": str(self.run / "bridge-data"),
            "broker": {"host": LOOPBACK, "port": broker_port, "keepalive": 10},
            "seedboxes": [
                {
                    "id": SEEDBOX_ID,
                    "name": "Card seedbox",
                    "host": LOOPBACK,
                    "port": sshd.port,
                    "user": sshd.user,
                    "key": str(sshd.client_key),
                    "known_hosts": str(sshd.known_hosts),
                    "remote_roots": [str(self.downloads)],
                    "engine": "sftp",
                    "hook_flush": "true",
                }
            ],
            "destinations": {
                "movies": str(library / "movies"),
                "tv": str(library / "tv"),
                "default": str(library / "other"),
            },
            "rules": [
                {"destination": "tv", "match": [{"field": "category", "is": "tv"}]},
                {"destination": "movies", "match": [{"field": "category", "is": "movies"}]},
            ],
            # One at a time and slow: the big one transfers while the others wait.
            "transfers": {"max_concurrent": 1, "bandwidth_limit": "4MiB", "max_attempts": 1},
        }
        path = self.run / "bridge.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # --- the card -----------------------------------------------------------------------

    @property
    def card(self) -> Any:
        return self.page.locator(CARD)

    def row(self, name: str) -> Any:
        return self.card.locator(".row", has_text=name)

    def publish(self, name: str) -> None:
        """A completion event; the item must show on the card within APPEAR_WITHIN, as
        timed in the page from just before the event to the frame that shows its row."""
        assert self.log is not None
        category, size = FILES[name]
        self.card.evaluate(WATCH_FOR_ROW, [name, self.left(f"{name} on the card") * 1000])
        self.log.publish_completed(self.downloads / name, category, size)
        elapsed_ms: float | None = self.page.evaluate("() => window.q4dRowShown")
        if elapsed_ms is None:
            raise DemoError(f"{name} never showed on the card")
        self.row(name).wait_for(state="visible")
        self.appeared[name] = elapsed_ms / 1000
        say(f"card: {name} appeared after {elapsed_ms:.0f} ms")
        if elapsed_ms > APPEAR_WITHIN * 1000:
            raise DemoError(f"{name} took {elapsed_ms:.0f} ms to show (limit {APPEAR_WITHIN} s)")

    def shows(self, name: str, text: str) -> None:
        self.row(name).get_by_text(text).first.wait_for(timeout=self.left(text) * 1000)

    def press(self, label: str, name: str | None, op: str, expect: Callable[[], bool]) -> None:
        """Click a button of an item's row (or of the queue), then check the bridge got
        the command (op, with the item's id) and that it took effect."""
        assert self.log is not None
        item_id = self.log.item(name)["id"] if name else None
        sent = len(self.log.commands)
        scope = self.row(name) if name else self.card
        scope.get_by_role("button", name=label, exact=True).click()

        def received() -> dict[str, Any] | None:
            assert self.log is not None
            with self.log.lock:
                for command in self.log.commands[sent:]:
                    if command["op"] == op and command["args"].get("item_id") == item_id:
                        return command
            return None

        command = self.until(received, f"the bridge to receive {op} for {name or 'the queue'}")
        self.until(expect, f"{op} to take effect on {name or 'the queue'}")
        say(f"card: {label} on {name or 'the queue'}: the bridge received "
            f"{op} {json.dumps(command['args'])} and applied it")  # fmt: skip

    def item_is(self, name: str, **wanted: Any) -> Callable[[], bool]:
        assert self.log is not None
        log = self.log
        return lambda: all(log.item(name).get(k) == v for k, v in wanted.items())

    def screenshot(self, name: str, viewport: dict[str, int]) -> None:
        """The card alone, in a window of the viewport's width: made tall enough for the
        whole card, so that no scrolling puts Home Assistant's top bar over it."""
        self.page.set_viewport_size(viewport)
        self.page.mouse.move(0, 0)  # no button highlighted
        self.page.wait_for_timeout(300)  # the layout settles
        box = self.card.bounding_box()
        height = max(viewport["height"], int(box["y"] + box["height"]) + 16)
        self.page.set_viewport_size({"width": viewport["width"], "height": height})
        self.page.wait_for_timeout(300)
        path = self.screenshots / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.card.screenshot(path=str(path))
        say(f"card: screenshot {path} ({viewport['width']} px wide window)")

    def background(self) -> float:
        """Relative luminance of the card's background (0 black, 1 white)."""
        rgb: list[float] = self.card.evaluate(
            "card => getComputedStyle(card.shadowRoot.querySelector('ha-card'))"
            ".backgroundColor.match(/[\\d.]+/g).slice(0, 3).map(Number)"
        )
        r, g, b = (value / 255 for value in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    def check(self) -> None:
        self.start()
        self.publish(DONE)
        self.shows(DONE, "Done")
        self.shows(DONE, "average")  # size, duration, average speed
        self.publish(MISSING)
        self.shows(MISSING, "Failed: remote path missing")
        self.publish(BIG)
        self.shows(BIG, "Transferring")
        for name in EPISODES:
            self.publish(name)
            self.shows(name, "Queued")
        e1, e2, e3 = EPISODES
        self.press("Raise priority", e2, "set_priority", self.item_is(e2, priority=1))
        self.shows(e2, "priority 1")
        self.press("Lower priority", e1, "set_priority", self.item_is(e1, priority=-1))
        self.press("Pause", e1, "pause", self.item_is(e1, paused=True))
        self.shows(e1, "Paused")
        self.press("Cancel", e3, "cancel", self.item_is(e3, state="cancelled"))
        self.shows(e3, "Cancelled")

        self.screenshot("card-desktop.png", DESKTOP)
        self.screenshot("card-phone.png", PHONE)
        light = self.background()
        self.page.emulate_media(color_scheme="dark")  # the default theme follows the system
        self.screenshot("card-phone-dark.png", PHONE)
        dark = self.background()
        say(f"card: background luminance {light:.2f} in the light theme, {dark:.2f} in the dark")
        if light < 0.8 or dark > 0.2:
            raise DemoError("the card does not follow the light and dark themes")
        self.page.emulate_media(color_scheme="light")
        self.page.set_viewport_size(DESKTOP)

        self.press("Resume", e1, "resume", self.item_is(e1, paused=False))
        self.press("Retry", MISSING, "retry", self.item_is(MISSING, state="queued"))
        self.press("Pause", BIG, "pause", self.item_is(BIG, paused=True))
        self.press("Resume", BIG, "resume", self.item_is(BIG, paused=False))
        self.press("Pause queue", None, "pause", lambda: self.banner_visible(True))
        self.press("Resume queue", None, "resume", lambda: self.banner_visible(False))
        timings = ", ".join(f"{t * 1000:.0f}" for t in self.appeared.values())
        say(f"card: every item appeared within {max(self.appeared.values()) * 1000:.0f} ms "
            f"of its event ({timings} ms); every button sent its action")  # fmt: skip

    def banner_visible(self, visible: bool) -> bool:
        shown: bool = self.card.locator(".banner", has_text="Queue paused").is_visible()
        return shown == visible

    def stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.close()
            say(self.dashboard.browser.summary())
        if self.log is not None:
            self.log.close()
        self.procs.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo_card.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--screenshots", type=Path, default=DEMO / "card-run" / "screenshots",
                        help="where to save the card's screenshots")  # fmt: skip
    parser.add_argument("--run", type=Path, default=DEMO / "card-run",
                        help="run directory (state, logs), recreated")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=150.0,
                        help="give up after this many seconds (default 150)")  # fmt: skip
    args = parser.parse_args(argv)
    check = CardCheck(args.run.resolve(), args.screenshots.resolve(), args.timeout)
    return run_check("card check", check.check, check.stop, lambda: f"logs: {check.procs.logs}")


if __name__ == "__main__":
    sys.exit(main())
