"""Home Assistant in the q4d demo: its config, its set-up over REST, and what it saw.

The demo's Home Assistant is a real ``hass`` in ``demo/run/hass``: HTTP on
127.0.0.1, ``--skip-pip``, no ``default_config`` (but the recorder, History and
Logbook), only the loopback network adapter enabled, analytics never opted in.
Onboarding is completed over its REST API with the demo user; the step that would
set up network integrations (``core_config`` sets up met.no, Radio Browser, Google
Translate) is marked done beforehand. MQTT is added through its config flow, and q4d
through the flow MQTT discovery starts.

:class:`Observer` follows Home Assistant over its websocket API: the state of
every q4d item status sensor and the ``q4d_transfer_*`` events, so the demo can
show, and its test can check, what Home Assistant saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

USERNAME = "demo"
PASSWORD = "q4d-demo"  # noqa: S105 (the demo user's, printed for the reader)
DASHBOARD_PATH = "q4d-transfers"
# Launch flags that keep Chromium itself off the network: no background requests
# (component and safe-browsing updates, sync, first-run pages), no QUIC, and a host
# resolver that resolves nothing (every name fails at once; 127.0.0.1 is an address).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


# The one socket HA binds beyond loopback: zeroconf's unicast listener, with no
# multicast membership once only the loopback adapter is enabled.
MDNS_SOCKETS = ("udp:*:5353", "udp:0.0.0.0:5353")


class HassError(Exception):
    """Home Assistant did not do what the demo asked."""


class DemoHass:
    """One Home Assistant config directory and the REST calls that set it up."""

    def __init__(self, config_dir: Path, port: int, *, dashboard: Path, integration: Path) -> None:
        self.config_dir = config_dir
        self.port = port
        self.dashboard = dashboard
        self.integration = integration
        self.url = f"http://127.0.0.1:{port}"
        self.client_id = f"{self.url}/"
        self.token: str | None = None

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/{DASHBOARD_PATH}/transfers"

    def write_config(self) -> None:
        config: dict[str, Any] = {
            "homeassistant": {
                "name": "q4d demo",
                "latitude": 52.3731,
                "longitude": 4.8922,
                "elevation": 0,
                "unit_system": "metric",
                "currency": "EUR",
                "country": "NL",
                "language": "en",
                "time_zone": "UTC",
                "internal_url": self.url,
            },
            "http": {"server_host": "127.0.0.1", "server_port": self.port},
            "api": {},
            "config": {},
            "websocket_api": {},
            "onboarding": {},
            "frontend": {},
            # History and Logbook for the q4d entities: SQLite in the config directory,
            # committed every second so that they show what just happened.
            "recorder": {
                "db_url": f"sqlite:///{self.config_dir / 'home-assistant_v2.db'}",
                "commit_interval": 1,
            },
            "history": {},
            "logbook": {},
            "lovelace": {
                "dashboards": {
                    DASHBOARD_PATH: {
                        "mode": "yaml",
                        "filename": "dashboards/q4d.yaml",
                        "title": "Transfers",
                        "icon": "mdi:download-network",
                        "show_in_sidebar": True,
                    }
                }
            },
            "logger": {"default": "warning", "logs": {"custom_components.q4d": "info"}},
        }
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(yaml.safe_dump(config))
        for link, target in (
            (self.config_dir / "custom_components" / "q4d", self.integration),
            (self.config_dir / "dashboards" / "q4d.yaml", self.dashboard),
        ):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        storage = self.config_dir / ".storage"
        storage.mkdir(exist_ok=True)
        onboarding = {
            "version": 4,
            "minor_version": 1,
            "key": "onboarding",
            "data": {"done": ["core_config", "analytics", "integration"]},
        }
        (storage / "onboarding").write_text(json.dumps(onboarding))
        # HA's shared HTTP client starts an mDNS stack (python-zeroconf) on the enabled
        # network adapters; with loopback alone it joins no multicast group and sends
        # nothing, leaving only its unicast socket on *:5353 (MDNS_SOCKETS).
        network = {"version": 1, "key": "core.network", "data": {"configured_adapters": ["lo"]}}
        (storage / "core.network").write_text(json.dumps(network))

    def argv(self, python: str) -> list[str]:
        return [python, "-m", "homeassistant", "--config", str(self.config_dir), "--skip-pip"]

    # --- set-up over REST and the websocket API -----------------------------------------

    def set_up(self, broker_port: int, bridge_id: str, timeout: float) -> None:
        """Onboard the demo user, add MQTT, accept the discovered q4d bridge."""
        _run(asyncio.wait_for(self._set_up(broker_port, bridge_id), timeout))

    def call(self, domain: str, service: str, data: dict[str, Any] | None = None) -> None:
        _run(self._request("POST", f"/api/services/{domain}/{service}", data or {}))

    def recorded(self, entity_id: str) -> tuple[int, int]:
        """States of entity_id in History and entries in the Logbook (the last day);
        HassError unless both answer 200."""
        counts: tuple[int, int] = _run(self._recorded(entity_id))
        return counts

    async def _recorded(self, entity_id: str) -> tuple[int, int]:
        history = await self._request("GET", f"/api/history/period?filter_entity_id={entity_id}")
        logbook = await self._request("GET", "/api/logbook")
        return sum(len(states) for states in history), len(logbook)

    def set_up_mqtt(self, broker_port: int, bridge_id: str, timeout: float) -> None:
        """Onboard the demo user and add MQTT; the discovered q4d bridge's flow waits."""
        _run(asyncio.wait_for(self._set_up_mqtt(broker_port, bridge_id), timeout))

    async def _set_up_mqtt(self, broker_port: int, bridge_id: str) -> dict[str, Any]:
        answer = await self._request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": self.client_id,
                "name": "q4d demo",
                "username": USERNAME,
                "password": PASSWORD,
                "language": "en",
            },
            auth=False,
        )
        self.token = await self._token(answer["auth_code"])
        flow = await self._request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("type") == "form":
            flow = await self._request(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"broker": "127.0.0.1", "port": broker_port},
            )
        if flow.get("type") != "create_entry":
            raise HassError(f"the MQTT config flow did not create an entry: {flow}")
        return await self._discovered_flow(bridge_id)

    async def _set_up(self, broker_port: int, bridge_id: str) -> None:
        discovered = await self._set_up_mqtt(broker_port, bridge_id)
        created = await self._request(
            "POST", f"/api/config/config_entries/flow/{discovered['flow_id']}", {}
        )
        if created.get("type") != "create_entry":
            raise HassError(f"the q4d discovery flow did not create an entry: {created}")
        await self._enable_item_entities(created["result"]["entry_id"])
        # Commands need the bridge online, which the integration learns from its status.
        connected = (
            "{{ integration_entities('q4d') | select('match', 'binary_sensor\\..*_connectivity$')"
            " | select('is_state', 'on') | list | count }}"
        )
        for _ in range(300):
            if await self._request("POST", "/api/template", {"template": connected}) == "1":
                return
            await asyncio.sleep(0.2)
        raise HassError("the q4d integration never saw the bridge online")

    async def _enable_item_entities(self, entry_id: str) -> None:
        """Opt in to the item entities the dashboard and the Observer follow (the entry
        reloads with them; the wait for the bridge online below waits for that too)."""
        flow = await self._request(
            "POST", "/api/config/config_entries/options/flow", {"handler": entry_id}
        )
        step = f"/api/config/config_entries/options/flow/{flow['flow_id']}"
        # The options open on a menu: Display holds these two.
        await self._request("POST", step, {"next_step_id": "display"})
        done = await self._request("POST", step, {"item_entities": True, "finished_retention": 60})
        if done.get("type") != "create_entry":
            raise HassError(f"the q4d options flow did not finish: {done}")

    async def _token(self, code: str) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.url}/auth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "client_id": self.client_id,
                },
            ) as answer,
        ):
            if answer.status != 200:
                raise HassError(f"/auth/token answered {answer.status}: {await answer.text()}")
            token: str = (await answer.json())["access_token"]
            return token

    async def _discovered_flow(self, bridge_id: str) -> dict[str, Any]:
        """The flow MQTT discovery started for the bridge (it may take a moment)."""
        async with aiohttp.ClientSession() as session, self.websocket(session) as ws:
            for attempt in range(1, 200):
                await ws.send_json({"id": attempt, "type": "config_entries/flow/progress"})
                answer = await ws.receive_json()
                for flow in answer.get("result") or []:
                    if flow["handler"] == "q4d" and flow["context"].get("unique_id") == bridge_id:
                        return dict(flow)
                await asyncio.sleep(0.2)
        raise HassError(f"MQTT discovery did not start a q4d flow for bridge {bridge_id!r}")

    @contextlib.asynccontextmanager
    async def websocket(self, session: aiohttp.ClientSession) -> Any:
        async with session.ws_connect(f"{self.url}/api/websocket") as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": self.token})
            answer = await ws.receive_json()
            if answer.get("type") != "auth_ok":
                raise HassError(f"the websocket API refused the token: {answer}")
            yield ws

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: bool = True
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.url}{path}", json=body, headers=headers) as answer,
        ):
            if answer.status >= 300:
                raise HassError(f"{method} {path} answered {answer.status}: {await answer.text()}")
            if answer.content_type == "application/json":
                return await answer.json()
            return await answer.text()

    def http_ready(self) -> bool:
        async def probe() -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{self.url}/api/onboarding") as answer,
                ):
                    return answer.status == 200
            return False

        ready: bool = _run(probe())
        return ready


class Observer:
    """Follows q4d item status sensors and q4d events over the websocket API."""

    def __init__(self, hass: DemoHass, record: Path) -> None:
        self.hass = hass
        self.record = record
        self.states: dict[str, list[str]] = {}  # item id -> its status sensor's states
        self.entities: dict[str, str] = {}  # item id -> entity id
        self.events: dict[str, list[dict[str, Any]]] = {}  # q4d_transfer_<kind> -> event data
        self.lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._subscribed = threading.Event()
        self._failure: BaseException | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._thread = threading.Thread(target=self._run, name="hass-observer", daemon=True)

    def start(self, timeout: float = 20) -> None:
        self._thread.start()
        if not self._subscribed.wait(timeout):
            raise HassError(f"could not follow Home Assistant's websocket: {self._failure}")

    def stop(self) -> None:
        """Close the websocket (an open one would hold up Home Assistant's shutdown)."""
        ws = self._ws
        if ws is not None and self._thread.is_alive():
            closing = asyncio.run_coroutine_threadsafe(ws.close(), self._loop)
            with contextlib.suppress(Exception):
                closing.result(5)
        self._thread.join(5)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._follow())
        except Exception as err:  # start() reports it; later, the demo times out waiting
            self._failure = err
        finally:
            self._loop.close()

    async def _follow(self) -> None:
        async with aiohttp.ClientSession() as session, self.hass.websocket(session) as ws:
            self._ws = ws
            await ws.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
            await ws.receive_json()
            for n, kind in enumerate(("queued", "started", "completed", "failed"), start=2):
                event_type = f"q4d_transfer_{kind}"
                await ws.send_json({"id": n, "type": "subscribe_events", "event_type": event_type})
                await ws.receive_json()
            self._subscribed.set()
            with self.record.open("a") as out:
                async for message in ws:
                    seen = self._seen(json.loads(message.data).get("event") or {})
                    if seen is not None:
                        out.write(json.dumps(seen) + "\n")
                        out.flush()

    def _seen(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Record one websocket event when it concerns q4d items."""
        event_type = event.get("event_type", "")
        data = event.get("data") or {}
        if event_type.startswith("q4d_transfer_"):
            with self.lock:
                self.events.setdefault(event_type, []).append(data)
            return {"event": event_type, "item_id": data.get("item_id"), "name": data.get("name")}
        new = data.get("new_state") or {}
        attributes = new.get("attributes") or {}
        item_id = attributes.get("item_id")
        if (
            event_type != "state_changed"
            or item_id is None
            # the item's status sensor (an enum whose options follow the integration's)
            or "transferring" not in (attributes.get("options") or ())
        ):
            return None
        with self.lock:
            self.entities[item_id] = new["entity_id"]
            history = self.states.setdefault(item_id, [])
            if history and history[-1] == new["state"]:
                return None
            history.append(new["state"])
        return {"entity_id": new["entity_id"], "item_id": item_id, "state": new["state"]}

    def went_through(self, item_id: str, *wanted: str) -> bool:
        """Whether the item's status sensor showed these states in this order."""
        with self.lock:
            history = iter(self.states.get(item_id, []))
        return all(state in history for state in wanted)

    def fired(self, kind: str, item_id: str) -> bool:
        with self.lock:
            return any(
                e.get("item_id") == item_id for e in self.events.get(f"q4d_transfer_{kind}", [])
            )


def on_loopback(url: str) -> bool:
    """Whether a URL the browser asks for points at 127.0.0.1/[::1] (or is no network
    request at all: data:, blob:, about:)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname in LOOPBACK_HOSTS


class ConfinedBrowser:
    """Headless Chromium (Debian's, driven by Playwright) kept to loopback.

    Chromium starts with CHROMIUM_ARGS (no background requests, a resolver that resolves
    nothing). Every request its pages make is logged to request_log, JSON lines:
    "request" (url, method, resource type, whether it is on loopback); "blocked" for one
    to anything but 127.0.0.1/[::1], aborted before it leaves the browser (Home
    Assistant's frontend asks brands.home-assistant.io for integration logos); "reached"
    for one beyond loopback that got an answer anyway (never, unless blocking broke).
    Service workers are blocked, so none of the pages' requests bypasses this."""

    def __init__(self, request_log: Path, *, width: int = 1440, height: int = 1000) -> None:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (only for this check)

        self.request_log = request_log
        self.requests: list[dict[str, Any]] = []
        self._browser: Any = None
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium(), args=CHROMIUM_ARGS
            )
            self.context = self._browser.new_context(
                viewport={"width": width, "height": height}, service_workers="block"
            )
            self.context.route(lambda url: not on_loopback(url), self._block)
            self.context.route_web_socket(lambda url: not on_loopback(url), self._block_websocket)
            self.context.on("request", self._log_request)
            self.context.on("requestfinished", self._log_finished)
        except BaseException:
            self.close()
            raise

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("websocket", self._log_websocket)
        return page

    def _log(self, event: str, url: str, **details: Any) -> None:
        entry = {"event": event, "url": url, **details}
        self.requests.append(entry)
        with self.request_log.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def _log_request(self, request: Any) -> None:
        self._log("request", request.url, method=request.method, type=request.resource_type,
                  loopback=on_loopback(request.url))  # fmt: skip

    def _log_websocket(self, websocket: Any) -> None:
        self._log("request", websocket.url, method="GET", type="websocket",
                  loopback=on_loopback(websocket.url))  # fmt: skip

    def _log_finished(self, request: Any) -> None:
        if not on_loopback(request.url):
            self._log("reached", request.url)

    def _block(self, route: Any) -> None:
        self._log("blocked", route.request.url)
        route.abort("blockedbyclient")

    def _block_websocket(self, websocket: Any) -> None:
        self._log("blocked", websocket.url)
        websocket.close(code=1008, reason="beyond loopback: blocked by the q4d demo")

    def blocked(self) -> list[str]:
        """The URLs beyond loopback the pages asked for (each one blocked)."""
        return sorted({entry["url"] for entry in self.requests if entry["event"] == "blocked"})

    def loopback_requests(self) -> int:
        return sum(1 for e in self.requests if e["event"] == "request" and e["loopback"])

    def summary(self) -> str:
        return (f"headless Chromium: {self.loopback_requests()} requests to 127.0.0.1, "
                f"{len(self.blocked())} beyond loopback blocked")  # fmt: skip

    def close(self) -> None:
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
        self._playwright.stop()


class Dashboard:
    """The q4d dashboard in a ConfinedBrowser, logged in through Home Assistant's login
    page: waits for texts to show on its cards and takes screenshots."""

    def __init__(self, hass: DemoHass, timeout: float = 60, *, request_log: Path) -> None:
        self.browser = ConfinedBrowser(request_log)
        try:
            self.page = self.browser.new_page()
            self.page.set_default_timeout(timeout * 1000)
            self.page.goto(hass.dashboard_url)
            self.page.get_by_role("textbox", name="Username").fill(USERNAME)
            self.page.get_by_role("textbox", name="Password").fill(PASSWORD)
            self.page.get_by_role("button", name="Log in").click()
            self.page.wait_for_url(f"{hass.dashboard_url}*")
        except BaseException:
            self.close()
            raise

    def capture(self, screenshot: Path, expect: list[str]) -> list[str]:
        """Wait until every text in expect shows, save a screenshot; the card titles."""
        for text in expect:
            self.page.get_by_text(text, exact=False).first.wait_for(state="visible")
        titles: list[str] = self.page.locator(
            "hui-markdown-card ha-card, ha-card .card-header"
        ).all_inner_texts()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(screenshot), full_page=True)
        return [t.strip().splitlines()[0] for t in titles if t.strip()]

    def close(self) -> None:
        self.browser.close()


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end from synchronous code, in a thread of its own: the
    demo's thread may already run an event loop (Playwright's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def chromium() -> str:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    raise HassError("Chromium is not installed: run ./scripts/setup (as root)")
