"""Screenshots of the set-up walk-through in docs/home-assistant.md, taken in headless Chromium.

    .venv/bin/python scripts/docs_screenshots.py --run /tmp/q4d   # as the docs' pictures
    .venv/bin/python scripts/docs_screenshots.py [--out DIR] [--run DIR] [--timeout S]

Starts, each by PID in demo/docs-run/state.json (``--run``) and stopped at the end,
everything on 127.0.0.1: Mosquitto; a throwaway sshd standing in for the seedbox, with a
"download" in it; the bridge (its YAML file holds only the broker, the data folder and
slow transfers: no seedbox, destination or rule); Home Assistant with the demo user
onboarded and MQTT added (scripts/demo_hass.py), the q4d bridge discovered but not set
up. Then, in headless Chromium (ConfinedBrowser: loopback only, every other request
blocked), it goes where a new user goes: Settings → Devices & services, confirms the
discovered bridge, adds the first seedbox (SSH form, host key confirmation, torrent
client), a destination and a rule, opens the seedbox's device page, publishes a
completion as the seedbox's hook does and follows the item on the transfers card until
it landed. Each step's picture is saved as docs/images/setup-*.png (cropped to the
dialog or the card, palette PNG); exit 0 when every step showed what it should.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
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
from scripts.demo_hass import (  # noqa: E402
    MDNS_SOCKETS,
    PASSWORD,
    USERNAME,
    ConfinedBrowser,
    DemoHass,
    _run,
)
from tests.helpers.services import (  # noqa: E402
    LOOPBACK,
    Q4D_BROKER_SETTINGS,
    Mosquitto,
    SshServer,
    free_port,
)

BRIDGE_ID = "home"
BRIDGE_NAME = "q4d"
SEEDBOX = "seedbox"  # the seedbox added from Home Assistant
SEEDBOX_NAME = "My seedbox"
PAYLOAD = "Big.Buck.Bunny.2008.1080p.mkv"
MiB = 1024 * 1024
WINDOW = {"width": 1200, "height": 900}
TALL = {"width": 1200, "height": 1700}  # the longest form fits in a dialog, unscrolled
# What the SSH form's picture shows instead of the (throwaway) key: no private key in docs.
KEY_SHOWN = "-----BEGIN OPENSSH PRIVATE KEY-----\n…\n-----END OPENSSH PRIVATE KEY-----\n"
CARD = "q4d-transfers-card"
MAX_TOTAL = 1_500_000  # bytes, all the setup-*.png together


class DocsHass(DemoHass):
    """The demo's Home Assistant, set up only as far as a new user finds it (set_up_mqtt):
    onboarded, MQTT added, the bridge discovered (its flow waiting for the user)."""

    def device_id(self, name: str) -> str | None:
        async def find() -> str | None:
            import aiohttp  # noqa: PLC0415 (the venv only)

            async with aiohttp.ClientSession() as session, self.websocket(session) as ws:
                await ws.send_json({"id": 1, "type": "config/device_registry/list"})
                devices = (await ws.receive_json()).get("result") or []
            return next((d["id"] for d in devices if d.get("name") == name), None)

        found: str | None = _run(find())
        return found


class Walkthrough(TimedCheck):
    poll = 0.2

    def __init__(self, run: Path, out: Path, timeout: float) -> None:
        self.run = run
        self.out = out
        super().__init__(timeout)
        self.procs = Processes(run)
        self.browser: ConfinedBrowser | None = None
        self.saved: list[Path] = []
        self.mqtt: Any = None
        self.page: Any = None

    # --- set-up ------------------------------------------------------------------------

    def start(self) -> None:
        if self.run.exists():
            shutil.rmtree(self.run)
        self.procs.logs.mkdir(parents=True)
        broker = Mosquitto(self.run / "mosquitto", extra_config=Q4D_BROKER_SETTINGS)
        self.procs.start("mosquitto", broker._argv(), ports=(broker.port,))
        self.broker_port = broker.port
        hass = self.hass = DocsHass(
            self.run / "hass",
            free_port(),
            dashboard=ROOT / "dashboards" / "q4d.yaml",
            integration=ROOT / "custom_components" / "q4d",
        )
        hass.write_config()
        self.procs.start("home-assistant", hass.argv(sys.executable), allowed=MDNS_SOCKETS)
        sshd = self.sshd = SshServer(self.run / "sshd")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        sshd._check_config()
        self.procs.start("sshd", sshd._argv(), ports=(sshd.port,))
        self.downloads = self.run / "seedbox" / "downloads"
        self.downloads.mkdir(parents=True)
        with (self.downloads / PAYLOAD).open("wb") as payload:
            payload.truncate(48 * MiB)  # sparse: read back as zeros
        self.library = self.run / "library"
        self.connect_mqtt()
        config = self.write_bridge_config(broker.port)
        bridge = str(Path(sys.executable).parent / "q4d-bridge")
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'bridge'}:{ROOT / 'seedbox'}"}
        self.procs.start("q4d-bridge", [bridge, "run", "--config", str(config)], env=env,
                         ready=lambda: self.bridge_online, timeout=30)  # fmt: skip
        self.until(hass.http_ready, "Home Assistant's HTTP API")
        hass.set_up_mqtt(broker.port, BRIDGE_ID, self.left("Home Assistant's set-up"))
        say(f"Home Assistant {hass.url}: MQTT added, the q4d bridge discovered")

    def connect_mqtt(self) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 (the venv only)
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.bridge_online = False
        self.items: dict[str, dict[str, Any]] = {}

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            if not message.payload:
                return
            body = json.loads(message.payload)
            if message.topic.endswith("/status"):
                self.bridge_online = body.get("state") == "online"
            else:
                self.items[body["name"]] = body

        base = f"q4d/bridge/{BRIDGE_ID}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe([(f"{base}/status", 1),
                                                       (f"{base}/item/+", 1)])  # fmt: skip
        client.on_message = on_message
        client.connect(LOOPBACK, self.broker_port)
        client.loop_start()
        self.mqtt = client

    def write_bridge_config(self, broker_port: int) -> Path:
        import yaml  # noqa: PLC0415 (the venv only)

        config = {
            "bridge": {"id": BRIDGE_ID, "name": BRIDGE_NAME},
            "data_dir": str(self.run / "bridge-data"),
            "broker": {"host": LOOPBACK, "port": broker_port, "keepalive": 10},
            # Slow enough for the card to show the transfer running.
            "transfers": {"max_concurrent": 1, "bandwidth_limit": "8MiB", "max_attempts": 1},
        }
        path = self.run / "bridge.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # --- the browser --------------------------------------------------------------------

    def open_browser(self) -> None:
        self.browser = ConfinedBrowser(
            self.procs.logs / "chromium-requests.jsonl", width=WINDOW["width"],
            height=WINDOW["height"],
        )  # fmt: skip
        page = self.page = self.browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{self.hass.url}/config/integrations/dashboard")
        page.get_by_role("textbox", name="Username").fill(USERNAME)
        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/config/integrations/dashboard*")

    @property
    def dialog(self) -> Any:
        return self.page.locator("dialog-data-entry-flow")

    def shot(self, name: str, target: Any = None, pad: int = 0) -> None:
        """Save docs/images/<name>: target's box (a locator), or the window."""
        self.page.mouse.move(0, 0)
        self.page.wait_for_timeout(400)  # animations and layout settle
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if target is None:
            self.page.screenshot(path=str(path))
        else:
            box = target.bounding_box()
            if box is None:
                raise DemoError(f"{name}: nothing to photograph")
            clip = {"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
                    "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad}  # fmt: skip
            self.page.screenshot(path=str(path), clip=clip)
        shrink(path)
        self.saved.append(path)
        say(f"screenshot {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
            f"({path.stat().st_size // 1024} KiB)")  # fmt: skip

    def dialog_shot(self, name: str) -> None:
        """The dialog alone, in a window tall enough for all of it."""
        self.page.set_viewport_size(TALL)
        try:
            self.shot(name, self.dialog_surface())
        finally:
            self.page.set_viewport_size(WINDOW)

    def dialog_surface(self) -> Any:
        surface = self.dialog.locator(".mdc-dialog__surface").first
        surface.wait_for(state="visible")
        return surface

    def dialog_shows(self, text: str) -> None:
        self.dialog.get_by_text(text, exact=False).first.wait_for(
            state="visible", timeout=self.left(text) * 1000
        )

    def submit(self) -> None:
        self.dialog.get_by_role("button", name="Submit").click()

    def fill(self, label: str, value: str) -> None:
        """Fill a field, again until it holds the value: a form re-rendered by a
        selection made just before can drop what was typed into it."""
        field = self.dialog.get_by_label(label, exact=True).first
        field.fill(value)
        self.page.wait_for_timeout(200)
        while field.input_value() != value:
            self.left(f"the field {label!r} to keep its value")
            field.fill(value)
            self.page.wait_for_timeout(200)

    def choose(self, label: str, option: str) -> None:
        self.dialog.get_by_label(label, exact=True).first.click()
        self.page.get_by_role("option", name=option, exact=True).first.click()

    def finish(self) -> None:
        """Close a flow's last dialog (Finish), and wait until it is gone."""
        self.dialog.get_by_role("button", name="Finish").click()
        self.dialog.locator(".mdc-dialog__surface").wait_for(state="hidden")

    # --- the walk-through ---------------------------------------------------------------

    def discovered(self) -> None:
        card = self.page.locator("ha-config-flow-card").filter(has_text=BRIDGE_NAME).first
        card.wait_for(state="visible", timeout=self.left("the discovered bridge") * 1000)
        self.shot("setup-discovered.png")
        card.get_by_role("button", name="Add").click()
        self.dialog_shows("Do you want to set up the q4d bridge")
        self.dialog_shot("setup-confirm.png")
        self.submit()
        self.dialog_shows("Success")
        self.finish()
        say("browser: the discovered bridge is set up")

    def integration_page(self) -> None:
        self.page.goto(f"{self.hass.url}/config/integrations/integration/q4d")
        self.page.get_by_text(BRIDGE_NAME).first.wait_for(
            state="visible", timeout=self.left("the q4d page") * 1000
        )

    def start_subentry(self, label: str) -> None:
        """Open the sub-entry flow from the bridge entry's ⋮ menu (HA 2025.4 puts its
        "Add ..." items there)."""
        self.integration_page()
        item = self.page.locator("ha-md-menu-item", has_text=label)
        menu = self.page.locator("ha-md-button-menu", has=item).first
        menu.locator("[slot=trigger]").first.click()
        item.first.click()
        self.dialog_surface()

    def add_seedbox(self) -> None:
        self.start_subentry("Add seedbox")
        self.fill("ID", SEEDBOX)
        self.fill("Name", SEEDBOX_NAME)
        self.fill("Host", LOOPBACK)
        self.fill("Port", str(self.sshd.port))
        self.fill("User", self.sshd.user)
        self.fill("Private key", KEY_SHOWN)
        roots = self.dialog.locator("ha-selector-text", has_text="Remote folders").first
        if roots.get_by_role("textbox").count() == 0:
            roots.get_by_role("button").first.click()
        roots.get_by_role("textbox").first.fill(str(self.downloads))
        self.dialog_shot("setup-seedbox-ssh.png")
        self.fill("Private key", self.sshd.client_key.read_text())
        self.submit()
        self.dialog_shows("SHA256:")
        self.dialog_shot("setup-seedbox-host-key.png")
        self.submit()
        self.dialog_shows("torrent client")
        self.dialog_shot("setup-seedbox-client.png")
        self.submit()
        self.dialog_shows("Success")
        self.finish()
        say("browser: the seedbox is added")

    def add_destination(self) -> None:
        self.start_subentry("Add destination")
        self.fill("Name", "movies")
        self.fill("Folder", str(self.library / "movies"))
        self.dialog_shot("setup-destination.png")
        self.submit()
        self.dialog_shows("Success")
        self.finish()
        say("browser: the destination is added")

    def add_rule(self) -> None:
        self.start_subentry("Add rule")
        self.fill("ID", "movies")
        self.fill("Order", "10")
        self.choose("Destination", "movies")
        self.dialog_shot("setup-rule.png")
        self.submit()
        self.dialog_shows("condition 1")
        self.choose("Field", "Category")
        self.choose("Comparison", "is")
        self.fill("Value", "movies")
        self.dialog_shot("setup-rule-condition.png")
        self.submit()
        self.dialog_shows("Success")
        self.finish()
        self.integration_page()
        self.page.get_by_text(SEEDBOX_NAME).first.wait_for(state="visible")
        self.shot("setup-entries.png")
        say("browser: the rule is added")

    def device_page(self) -> None:
        device = self.until(lambda: self.hass.device_id(SEEDBOX_NAME), "the seedbox's device")
        self.page.goto(f"{self.hass.url}/config/devices/device/{device}")
        self.page.get_by_text("Connected").first.wait_for(
            state="visible", timeout=self.left("the seedbox's device") * 1000
        )
        self.shot("setup-seedbox-device.png")

    def first_transfer(self) -> None:
        event = {"v": 1, "event_id": f"docs-{uuid4().hex}", "path": str(self.downloads / PAYLOAD),
                 "category": "movies", "size": 48 * MiB}  # fmt: skip
        self.page.goto(f"{self.hass.url}/q4d-transfers/transfers")
        card = self.page.locator(CARD).first
        card.wait_for(state="visible", timeout=self.left("the transfers card") * 1000)
        self.mqtt.publish(f"q4d/seedbox/{SEEDBOX}/completed", json.dumps(event), 1)
        row = card.locator(".row", has_text=PAYLOAD)
        row.get_by_text("Transferring").first.wait_for(timeout=self.left("transferring") * 1000)
        self.page.wait_for_timeout(1500)  # some progress to show
        self.shot("setup-transferring.png", card, pad=8)
        row.get_by_text("Done").first.wait_for(timeout=self.left("the landing") * 1000)
        # The counters follow with the bridge's next state snapshot.
        self.until(lambda: "0active" in card_text(card), "the card's counters")
        self.shot("setup-landed.png", card, pad=8)
        landed = self.library / "movies" / PAYLOAD
        if not landed.is_file() or landed.stat().st_size != 48 * MiB:
            raise DemoError(f"{landed} did not land")
        say(f"the completion from {SEEDBOX!r} landed in {landed}")

    def walk(self) -> None:
        self.start()
        self.open_browser()
        self.discovered()
        self.add_seedbox()
        self.add_destination()
        self.add_rule()
        self.device_page()
        self.first_transfer()
        total = sum(p.stat().st_size for p in self.saved)
        say(f"{len(self.saved)} screenshots, {total // 1024} KiB together")
        if total > MAX_TOTAL:
            raise DemoError(f"the screenshots take {total} bytes (limit {MAX_TOTAL})")

    def stop(self) -> None:
        if self.browser is not None:
            if self.page is not None and not self.page.is_closed():
                failure = self.run / "failure.png"
                self.page.screenshot(path=str(failure))
            self.browser.close()
            say(self.browser.summary())
        if self.mqtt is not None:
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
        self.procs.stop_all()


def card_text(card: Any) -> str:
    """The card's text (in its shadow root), without white space."""
    text: str = card.evaluate("card => card.shadowRoot.textContent")
    return "".join(text.split())


def shrink(path: Path) -> None:
    """A palette PNG (256 colours, enough for Home Assistant's flat UI), optimised."""
    from PIL import Image  # noqa: PLC0415 (the venv only)

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/docs_screenshots.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images",
                        help="where to save setup-*.png (default docs/images)")  # fmt: skip
    parser.add_argument("--run", type=Path, default=DEMO / "docs-run",
                        help="run directory (state, logs), recreated")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="give up after this many seconds (default 240)")  # fmt: skip
    args = parser.parse_args(argv)
    walk = Walkthrough(args.run.resolve(), args.out.resolve(), args.timeout)
    return run_check(
        "docs screenshots", walk.walk, walk.stop,
        lambda: f"logs: {walk.procs.logs}; the last page: {walk.run}/failure.png",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
