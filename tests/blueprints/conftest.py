"""Fixtures for the blueprint tests.

The blueprints are copied into a temporary configuration directory, where Home
Assistant's blueprint integration finds them as `q4d/<file>.yaml`. The q4d
integration's own fixtures (a mocked MQTT, a config entry, a fake bridge) are
imported from its tests for the tests that run the blueprints against it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant

from tests.components.q4d.conftest import (  # noqa: F401
    auto_enable_custom_integrations,
    entry_options,
    fake_bridge,
    init_integration,
    mock_config_entry,
    platforms,
    setup_entry,
)

from .common import BLUEPRINT_SOURCE


@pytest.fixture(autouse=True)
def blueprint_folder(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A configuration directory of our own holding blueprints/automation/q4d/."""
    hass.config.config_dir = str(tmp_path)
    target = Path(hass.config.path("blueprints", "automation", "q4d"))
    shutil.copytree(BLUEPRINT_SOURCE, target)
    return target
