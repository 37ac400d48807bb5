"""The add-on repository's files, checked as the Supervisor reads them (supervisor_rules.py),
and against the bridge: same version, same options, same discovery topic."""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
import yaml
from q4d_bridge.addon import options as addon_options

from tests.addon import supervisor_rules as rules

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "q4d-bridge"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(ADDON / "config.yaml")
    return loaded


def test_config_passes_the_supervisor_rules(config: dict[str, Any]) -> None:
    checked = rules.check_app_config(config)
    assert checked["slug"] == "q4d_bridge"
    assert set(checked["arch"]) == {"aarch64", "amd64"}


def _mutate(path: str, value: Any) -> Any:
    def apply(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


_DELETE = object()
# a seedbox in the options (the defaults have none: it is added from Home Assistant)
_SEEDBOX = {"id": "seedbox1", "host": "seedbox.example.com", "port": 22, "user": "me",
            "key_file": "/ssl/q4d/id_ed25519", "remote_root": "/home/me/downloads"}  # fmt: skip
_DESTINATION = {"name": "default", "path": "/media/downloads"}


def _given(path: str, value: Any) -> Any:
    """_mutate on options that hold one seedbox and one destination."""

    def apply(config: dict[str, Any]) -> None:
        config["options"]["seedboxes"] = [dict(_SEEDBOX)]
        config["options"]["destinations"] = [dict(_DESTINATION)]
        _mutate(path, value)(config)

    return apply


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_mutate("slug", _DELETE), "required key not provided @ data['slug']"),
        (_mutate("slug", "q4d bridge"), "does not match"),
        (_mutate("version", "latest"), "does not match"),
        (_mutate("arch", ["armv7", "amd64"]), "arch 'armv7' is deprecated"),
        (_mutate("arch", ["x86"]), "value must be one of"),
        (_mutate("map.0", "media:rw"), "use the mapping form"),
        (_mutate("map.3", {"type": "addon_config"}), "map type 'addon_config' is deprecated"),
        (_mutate("map.0", {"type": "library"}), "value must be one of"),
        (_mutate("services", ["mqtt:needs"]), "does not match"),
        (_mutate("ports", {"8090": 0}), "not a valid value for dictionary value @ data['ports']"),
        (_mutate("timeout", 5), "value must be at least 10"),
        (_mutate("servics", ["mqtt:need"]), "keys the Supervisor ignores: ['servics']"),
        (_mutate("schema.log_level", "string"), "@ data['schema']['log_level']"),
        (_mutate("schema.seedboxes", [["str"]]), "@ data['schema']['seedboxes'][0]"),
        (_mutate("options.log_level", "verbose"), "value must be one of"),
        (_given("options.seedboxes.0.port", 70000), "value must be at most 65535"),
        (_given("options.seedboxes.0.host", _DELETE), "Missing option 'host' in seedboxes"),
        (_mutate("options.bridge_id", "Home"), "does not match"),
        (_mutate("options.colour", "blue"), "options not in the schema under root: ['colour']"),
        (_given("options.destinations.0.path", "/data/x"), "does not match"),
    ],
)
def test_the_rules_refuse_what_the_supervisor_refuses(
    config: dict[str, Any], change: Any, message: str
) -> None:
    change(config)
    with pytest.raises(vol.Invalid) as err:
        rules.check_app_config(config)
    assert message in str(err.value)


def test_mqtt_from_the_supervisor_and_the_library_folders(config: dict[str, Any]) -> None:
    assert config["services"] == ["mqtt:need"]
    maps = {entry["type"]: entry.get("read_only", True) for entry in config["map"]}
    assert maps == {"media": False, "share": False, "ssl": True, "app_config": True}
    assert addon_options.LIBRARY_ROOTS == ("/media", "/share")


def _markers(schema: vol.Schema) -> dict[str, tuple[vol.Marker, Any]]:
    out: dict[str, tuple[vol.Marker, Any]] = {}
    for marker, validator in schema.schema.items():
        inner = validator.validators[0] if isinstance(validator, vol.All) else validator
        if isinstance(inner, list):
            inner = inner[0]
        out[str(marker.schema)] = (marker, inner)
    return out


def _same_options(yaml_schema: dict[str, Any], py_schema: vol.Schema, where: str) -> None:
    py = _markers(py_schema)
    assert sorted(yaml_schema) == sorted(py), where
    for key, typ in yaml_schema.items():
        marker, inner = py[key]
        element = typ[0] if isinstance(typ, list) else typ
        if isinstance(element, dict):
            assert isinstance(inner, vol.Schema), f"{where}.{key}"
            _same_options(element, inner, f"{where}.{key}")
        if isinstance(element, str) and element.endswith("?"):
            assert isinstance(marker, vol.Optional), f"{where}.{key}: optional in config.yaml"
        elif not isinstance(marker, vol.Required):
            # the Supervisor always hands it over; a default here is only a fallback
            assert marker.default is not vol.UNDEFINED, f"{where}.{key}: required in config.yaml"


def test_config_schema_and_the_run_step_know_the_same_options(config: dict[str, Any]) -> None:
    _same_options(config["schema"], addon_options.OPTIONS, "options")
    # the defaults the Supervisor shows are options the run step accepts
    defaults = copy.deepcopy(config["options"])
    assert addon_options.OPTIONS(defaults)["seedboxes"] == []  # added from Home Assistant
    given = defaults | {"seedboxes": [_SEEDBOX | {"host_key": "ssh-ed25519 AAAA"}],
                        "destinations": [_DESTINATION]}  # fmt: skip
    rules.check_options(config["schema"], given)
    addon_options.OPTIONS(given)


def test_init_runs_the_bridge_not_s6() -> None:
    config = _yaml(ADDON / "config.yaml")
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert config["init"] is True
    entrypoints = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)
    assert [json.loads(e) for e in entrypoints] == [["/run.sh"]]
    run = (ADDON / "run.sh").read_text(encoding="utf-8")
    assert run.startswith("#!/bin/sh\n")
    assert "exec /opt/q4d/bin/q4d-bridge addon-run" in run
    assert os.access(ADDON / "run.sh", os.X_OK)


def test_built_on_home_assistants_debian_base() -> None:
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "ARG BUILD_FROM=ghcr.io/home-assistant/base-debian:trixie"
    assert lines[1] == "FROM ${BUILD_FROM}"
    assert rules.RE_DOCKER_IMAGE_BUILD.match(lines[0].partition("=")[2])
    # build.yaml is deprecated since Supervisor 2026.04: the Dockerfile names its base
    assert not list(ADDON.glob("build.*"))


def test_the_addon_changelog_has_its_version(config: dict[str, Any]) -> None:
    # that the version is the bridge's: tests/test_version.py
    assert f"## {config['version']}" in (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")


def test_repository_file() -> None:
    repository = rules.REPOSITORY(_yaml(ROOT / "repository.yaml"))
    assert repository["name"]


def test_the_store_finds_exactly_this_addon() -> None:
    """The Supervisor takes every config.{yaml,yml,json} in the repository (outside dot
    folders and rootfs) for an add-on: a stray one would show up, broken, in the store."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "rootfs"]
        found += [
            Path(folder, f).relative_to(ROOT)
            for f in files
            if re.fullmatch(r"config\.(yaml|yml|json)", f)
        ]
    assert found == [Path("addon/q4d-bridge/config.yaml")]


def test_the_integration_discovers_the_addons_bridge() -> None:
    manifest = json.loads((ROOT / "custom_components/q4d/manifest.json").read_text())
    assert manifest["mqtt"] == [f"{addon_options.TOPIC_PREFIX}/bridge/+/status"]


def _option_tree(schema: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, typ in schema.items():
        element = typ[0] if isinstance(typ, list) else typ
        tree[key] = _option_tree(element) if isinstance(element, dict) else None
    return tree


def _translated_tree(configuration: dict[str, Any], where: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, entry in configuration.items():
        assert entry.get("name"), f"{where}.{key}: no name"
        assert entry.get("description"), f"{where}.{key}: no description"
        fields = entry.get("fields")
        tree[key] = _translated_tree(fields, f"{where}.{key}") if fields else None
    return tree


def test_translations_cover_every_option(config: dict[str, Any]) -> None:
    translations = rules.TRANSLATIONS(_yaml(ADDON / "translations" / "en.yaml"))
    assert _translated_tree(translations["configuration"], "en") == _option_tree(config["schema"])
    assert set(translations["network"]) == set(config["ports"])


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, size, idat = 8, (0, 0), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert zlib.decompress(idat), path
    return size


def test_icon_and_logo_are_pngs() -> None:
    assert _png_size(ADDON / "icon.png") == (128, 128)
    width, height = _png_size(ADDON / "logo.png")
    assert width > height >= 64
