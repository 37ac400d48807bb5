"""The demo's headless Chromium (scripts/demo_hass.py ConfinedBrowser) in a guarded
network namespace: a page on 127.0.0.1 that asks for images, a fetch and a websocket
beyond loopback (as Home Assistant's frontend asks brands.home-assistant.io for logos)
gets each one blocked and logged, and nothing is looked up or sent beyond loopback.
The same page in a Chromium without those confinements is caught by the guard, so the
guard sees what Chromium sends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.netguard import NetGuard

ROOT = Path(__file__).resolve().parents[2]
BEYOND = [
    "https://brands.home-assistant.io/_/mqtt/icon.png",  # a name: only the route stops it
    "http://198.51.100.7/logo.png",  # an address: no resolver involved
    "http://example.org/data.json",  # fetch()
    "ws://198.51.100.7:8123/api/websocket",  # a websocket
]

PAGE = f"""<!doctype html><title>q4d</title>
<img src="/local.png"><img src="{BEYOND[0]}"><img src="{BEYOND[1]}">
<script>
fetch("{BEYOND[2]}").catch(() => {{}});
try {{ new WebSocket("{BEYOND[3]}"); }} catch (e) {{}}
fetch("/done").catch(() => {{}});
</script>"""

BROWSE = """
import sys, threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

work, confined = Path(sys.argv[1]), sys.argv[2] == "confined"
server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(work)))
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
if confined:
    from scripts.demo_hass import ConfinedBrowser
    browser = ConfinedBrowser(work / "requests.jsonl")
    page = browser.new_page()
else:  # Playwright's own defaults only: no flags, no routes
    from playwright.sync_api import sync_playwright
    from scripts.demo_hass import chromium
    playwright = sync_playwright().start()
    plain = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
    page = plain.new_page()
try:
    # Not "load": unconfined, the image from 198.51.100.7 never arrives.
    page.goto(url, wait_until="domcontentloaded", timeout=30000)
    page.wait_for_timeout(2000)
finally:
    if confined:
        browser.close()
    else:
        plain.close()
        playwright.stop()
    server.shutdown()
"""


def browse(guard: NetGuard, work: Path, mode: str) -> None:
    done = subprocess.run(
        guard.argv([sys.executable, "-c", BROWSE, str(work), mode]),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_confined_chromium_blocks_and_logs_what_is_beyond_loopback(
    netguard: NetGuard, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text(PAGE)
    browse(netguard, tmp_path, "confined")
    log: list[dict[str, Any]] = [
        json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()
    ]
    requested = {e["url"] for e in log if e["event"] == "request" and not e["loopback"]}
    blocked = {e["url"] for e in log if e["event"] == "blocked"}
    assert set(BEYOND) <= blocked, log  # a routed websocket shows only as blocked
    assert requested <= blocked, log
    assert not [e for e in log if e["event"] == "reached"], log
    assert any(e["event"] == "request" and e["url"].endswith("/done") for e in log), log
    netguard.assert_clean()

    # Without the flags and the routes the same page reaches out, and the guard sees it.
    browse(netguard, tmp_path, "plain")
    found = "\n".join(netguard.violations())
    assert "-> 198.51.100.7:80 SYN" in found, found
    assert "name lookup 'brands.home-assistant.io'" in found, found
