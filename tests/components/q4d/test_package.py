"""Packaging checks hassfest and HACS would make: manifest, translations, services, icons."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from custom_components.q4d.const import DISPATCH_REASONS, ITEM_STATES
from custom_components.q4d.dispatch import DISPATCH_ERRORS
from custom_components.q4d.models import ITEM_STATUSES

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "custom_components" / "q4d"

RULES = {
    # bronze
    "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
    "config-flow-test-coverage", "dependency-transparency", "docs-actions", "docs-conditions",
    "docs-high-level-description", "docs-installation-instructions", "docs-removal-instructions",
    "docs-triggers", "entity-event-setup", "entity-unique-id", "has-entity-name", "runtime-data",
    "test-before-configure", "test-before-setup", "unique-config-entry",
    # silver
    "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
    "docs-installation-parameters", "entity-unavailable", "integration-owner",
    "log-when-unavailable", "parallel-updates", "reauthentication-flow", "test-coverage",
    # gold
    "devices", "diagnostics", "discovery", "discovery-update-info", "docs-data-update",
    "docs-examples", "docs-known-limitations", "docs-supported-devices",
    "docs-supported-functions", "docs-troubleshooting", "docs-use-cases", "dynamic-devices",
    "entity-category", "entity-device-class", "entity-disabled-by-default", "entity-translations",
    "exception-translations", "icon-translations", "reconfiguration-flow", "repair-issues",
    "stale-devices",
    # platinum
    "async-dependency", "inject-websession", "strict-typing",
}  # fmt: skip


def load(name: str) -> Any:
    """A JSON file of the package."""
    return json.loads((PACKAGE / name).read_text())


def translation_keys_in_code() -> dict[str, set[str]]:
    """translation_key="..." arguments in the code, by kind (entity or exception)."""
    found: dict[str, set[str]] = {"entity": set(), "exception": set()}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            value = keywords.get("translation_key")
            if not isinstance(value, ast.Constant) or not isinstance(value.value, str):
                continue
            kind = "exception" if "translation_domain" in keywords else "entity"
            if path.name == "issues.py":
                continue
            found[kind].add(value.value)
    return found


def test_manifest() -> None:
    """hassfest: domain and name first, then alphabetical; custom integrations need a version."""
    manifest = load("manifest.json")
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["domain"] == PACKAGE.name
    assert manifest["dependencies"] == ["http", "mqtt", "websocket_api"]
    assert manifest["after_dependencies"] == ["frontend"]
    assert manifest["mqtt"] == ["q4d/bridge/+/status"]
    assert manifest["requirements"] == []
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    for key in ("version", "codeowners", "documentation", "issue_tracker", "integration_type"):
        assert manifest[key]


def strings_in(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(value, f"{where}.{key}" if where else key)
    elif isinstance(node, str):
        yield where, node


def test_translations() -> None:
    """en.json is strings.json, and every key the code uses is translated."""
    strings = load("strings.json")
    icons = load("icons.json")
    assert load("translations/en.json") == strings
    # custom integrations get no build step that would resolve [%key:...%] references
    assert "[%key:" not in (PACKAGE / "strings.json").read_text()
    # the frontend reads strings as ICU messages: a `<` opens a tag ("Translation error:
    # UNCLOSED_TAG" under the field), a brace a placeholder
    for where, text in strings_in(strings):
        assert "<" not in text, f"{where}: {text}"
        assert re.fullmatch(r"([^{}]|\{[a-z_0-9]+\})*", text, re.S), f"{where}: {text}"
    used = translation_keys_in_code()
    entity_keys = {key for platform in strings["entity"].values() for key in platform}
    assert used["entity"] <= entity_keys
    assert used["exception"] <= set(strings["exceptions"])
    assert set(strings["entity"]["sensor"]["item_status"]["state"]) == set(ITEM_STATUSES)
    assert set(icons["entity"]["sensor"]["item_status"]["state"]) == set(ITEM_STATUSES)
    assert set(strings["selector"]["item_state"]["options"]) == set(ITEM_STATES)
    assert set(strings["entity"]["sensor"]["dispatch"]["state"]) == set(DISPATCH_REASONS)
    assert set(icons["entity"]["sensor"]["dispatch"]["state"]) == set(DISPATCH_REASONS)
    for key, _ in DISPATCH_ERRORS.values():
        assert "{message}" in strings["exceptions"][key]["message"], key
    issues = (PACKAGE / "issues.py").read_text()
    for issue in strings["issues"]:
        assert f'"{issue}"' in issues


def test_services_and_icons() -> None:
    """Every action has translations, fields and an icon; every entity key has an icon."""
    services = yaml.safe_load((PACKAGE / "services.yaml").read_text())
    strings = load("strings.json")
    icons = load("icons.json")
    assert set(services) == set(strings["services"]) == set(icons["services"])
    for service, spec in services.items():
        assert set(spec["fields"]) == set(strings["services"][service]["fields"])
    for platform, keys in strings["entity"].items():
        assert set(icons["entity"][platform]) <= set(keys), f"stale {platform} icons"
        for key in keys:
            if (platform, key) == ("binary_sensor", "reachable"):
                continue  # the connectivity device class brings its icons
            assert key in icons["entity"][platform], f"{platform}.{key} has no icon"


def test_quality_scale() -> None:
    """Every rule is done, or exempt with a reason."""
    rules = yaml.safe_load((PACKAGE / "quality_scale.yaml").read_text())["rules"]
    assert set(rules) == RULES
    for rule, status in rules.items():
        if isinstance(status, dict):
            assert status["status"] in ("done", "exempt"), rule
            assert status.get("comment"), rule
        else:
            assert status == "done", rule
