"""The transfers card (`custom:q4d-transfers-card`), installed with the integration.

Its script (frontend/q4d-transfers-card.js, no build step) is served by Home
Assistant's HTTP server and loaded by every dashboard as an extra frontend module,
so the card needs no download of its own and no Lovelace resource. The URL carries
a digest of the script: a browser's cached copy is replaced whenever the script
changes, even between two releases with the same version number.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from homeassistant.components.frontend import add_extra_js_url
from homeassistant.components.http import StaticPathConfig
from homeassistant.core import HomeAssistant

from . import websocket_api
from .const import DOMAIN

CARD_FILE: Final = "q4d-transfers-card.js"
CARD_PATH: Final = Path(__file__).parent / "frontend" / CARD_FILE
CARD_URL: Final = f"/{DOMAIN}/{CARD_FILE}"


async def async_setup_card(hass: HomeAssistant) -> None:
    """Serve the card's script, load it in every dashboard, register its data feed."""
    websocket_api.async_register(hass)
    digest = await hass.async_add_executor_job(_script_digest)
    await hass.http.async_register_static_paths(
        [StaticPathConfig(CARD_URL, str(CARD_PATH), cache_headers=True)]
    )
    # Without the frontend (a headless Home Assistant) there is no dashboard to load it.
    if "frontend" in hass.config.components:
        add_extra_js_url(hass, f"{CARD_URL}?v={digest}")


def _script_digest() -> str:
    return hashlib.sha256(CARD_PATH.read_bytes()).hexdigest()[:12]
