"""Repair issues raised (and cleared) from what the bridge reports.

None of them can be fixed from Home Assistant: each explains what to do on the
bridge or the seedbox, and disappears by itself once the condition ends.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN

DOCS_URL = "https://github.com/q4d-project/q4d/blob/main/docs/home-assistant.md#troubleshooting"


def _issue_id(entry_id: str, kind: str, key: str | None = None) -> str:
    return f"{entry_id}_{kind}" if key is None else f"{entry_id}_{kind}_{key}"


@callback
def _create(
    hass: HomeAssistant,
    issue_id: str,
    translation_key: str,
    severity: ir.IssueSeverity,
    placeholders: dict[str, str],
) -> None:
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        is_persistent=False,
        learn_more_url=DOCS_URL,
        severity=severity,
        translation_key=translation_key,
        translation_placeholders=placeholders,
    )


@callback
def async_create_bridge_offline(
    hass: HomeAssistant, entry_id: str, *, name: str, minutes: int
) -> None:
    """The bridge has been offline (or never seen) for too long."""
    _create(
        hass,
        _issue_id(entry_id, "bridge_offline"),
        "bridge_offline",
        ir.IssueSeverity.ERROR,
        {"bridge": name, "minutes": str(minutes)},
    )


@callback
def async_delete_bridge_offline(hass: HomeAssistant, entry_id: str) -> None:
    """The bridge is back online."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(entry_id, "bridge_offline"))


@callback
def async_create_breaker_open(
    hass: HomeAssistant, entry_id: str, *, seedbox: str, name: str, failures: int
) -> None:
    """A seedbox's circuit breaker keeps its transfers from starting."""
    _create(
        hass,
        _issue_id(entry_id, "breaker_open", seedbox),
        "breaker_open",
        ir.IssueSeverity.WARNING,
        {"seedbox": name, "failures": str(failures)},
    )


@callback
def async_delete_breaker_open(hass: HomeAssistant, entry_id: str, seedbox: str) -> None:
    """The seedbox's circuit breaker closed."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(entry_id, "breaker_open", seedbox))


@callback
def async_create_space(hass: HomeAssistant, entry_id: str, *, destination: str) -> None:
    """A destination lacks free space: below the bridge's margin, or items wait for it."""
    _create(
        hass,
        _issue_id(entry_id, "destination_space", destination),
        "destination_space",
        ir.IssueSeverity.WARNING,
        {"destination": destination},
    )


@callback
def async_delete_space(hass: HomeAssistant, entry_id: str, destination: str) -> None:
    """The destination has enough free space again and no item waits for it."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(entry_id, "destination_space", destination))


@callback
def async_create_host_key(hass: HomeAssistant, entry_id: str, *, seedbox: str, name: str) -> None:
    """A seedbox presented a host key that differs from the pinned one."""
    _create(
        hass,
        _issue_id(entry_id, "host_key_mismatch", seedbox),
        "host_key_mismatch",
        ir.IssueSeverity.ERROR,
        {"seedbox": name},
    )


@callback
def async_delete_host_key(hass: HomeAssistant, entry_id: str, seedbox: str) -> None:
    """The bridge connected to the seedbox (or no failed item reports a mismatch)."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(entry_id, "host_key_mismatch", seedbox))


@callback
def async_create_rejections(
    hass: HomeAssistant,
    entry_id: str,
    *,
    seedbox: str,
    name: str,
    count: int,
    minutes: int,
    reason: str,
    message: str,
) -> None:
    """The bridge keeps refusing a seedbox's completions."""
    _create(
        hass,
        _issue_id(entry_id, "completion_rejections", seedbox),
        "completion_rejections",
        ir.IssueSeverity.WARNING,
        {
            "seedbox": name,
            "count": str(count),
            "minutes": str(minutes),
            "reason": reason,
            "message": message,
        },
    )


@callback
def async_delete_rejections(hass: HomeAssistant, entry_id: str, seedbox: str) -> None:
    """A completion of the seedbox was accepted, or its rejections became rarer."""
    ir.async_delete_issue(hass, DOMAIN, _issue_id(entry_id, "completion_rejections", seedbox))


@callback
def async_delete_all(hass: HomeAssistant, entry_id: str) -> None:
    """Remove every issue of a config entry (unload or removal)."""
    registry = ir.async_get(hass)
    for domain, issue_id in list(registry.issues):
        if domain == DOMAIN and issue_id.startswith(f"{entry_id}_"):
            ir.async_delete_issue(hass, DOMAIN, issue_id)
