"""The HACS and hassfest checks that can be judged from the repository's files.

Reproduced from their sources (not vendored):
- HACS's action, hacs/integration custom_components/hacs/validate/: ``hacsjson``
  (utils/validate.py's HACS_MANIFEST_JSON_SCHEMA), ``integration_manifest``
  (INTEGRATION_MANIFEST_JSON_SCHEMA), ``brands`` (custom_components/<domain>/brand/icon.png,
  else a listing on brands.home-assistant.io), ``information`` (a README), and the layout
  repositories/integration.py expects (one folder under custom_components/);
- hassfest, home-assistant/core script/hassfest/manifest.py: CUSTOM_INTEGRATION_MANIFEST_SCHEMA,
  the version a custom integration must have, and the key order;
- Home Assistant 2026.3+'s brands proxy (homeassistant/components/brands): the image
  names it serves from a custom integration's brand/ folder, with the size rules of
  home-assistant/brands' validate.sh, which it mirrors.

HACS's other checks ask GitHub (description, topics, issues enabled, not archived, and the
license as GitHub detects it): here only the license file's text is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import voluptuous as vol
from awesomeversion import AwesomeVersion, AwesomeVersionException, AwesomeVersionStrategy
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "custom_components" / "q4d"

# --- hacs.json (HACS_MANIFEST_JSON_SCHEMA; "country" is checked there against ISO codes)

HACS_JSON = vol.Schema(
    {
        vol.Optional("content_in_root"): bool,
        vol.Optional("country"): vol.Any(str, [str]),
        vol.Optional("filename"): str,
        vol.Optional("hacs"): str,
        vol.Optional("hide_default_branch"): bool,
        vol.Optional("homeassistant"): str,
        vol.Optional("persistent_directory"): str,
        vol.Optional("render_readme"): bool,
        vol.Optional("zip_release"): bool,
        vol.Required("name"): str,
    },
    extra=vol.PREVENT_EXTRA,
)


def hacs_json_problems(data: dict[str, Any]) -> list[str]:
    try:
        HACS_JSON(data)
    except vol.Invalid as err:
        return [str(err)]
    if data.get("zip_release") and not data.get("filename"):
        return ["zip_release is True, but filename is not set"]
    return []


# --- manifest.json: HACS's schema, then hassfest's for custom integrations ------------


def url(value: Any) -> str:
    """Home Assistant's cv.url: an http(s) URL with a host."""
    parsed = urlparse(str(value))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise vol.Invalid(f"invalid url: {value!r}")
    return str(value)


HACS_MANIFEST = vol.Schema(
    {
        vol.Required("codeowners"): list,
        vol.Required("documentation"): url,
        vol.Required("domain"): str,
        vol.Required("issue_tracker"): url,
        vol.Required("name"): str,
        vol.Required("version"): vol.Coerce(AwesomeVersion),
    },
    extra=vol.ALLOW_EXTRA,
)


def custom_documentation_url(value: str) -> str:
    if urlparse(value).scheme != "https":
        raise vol.Invalid("Documentation url is not prefixed with https")
    if value.startswith("https://www.home-assistant.io/integrations"):
        raise vol.Invalid("Documentation URL should point to the custom integration documentation")
    return value


def verify_version(value: str) -> str:
    strategies = [
        AwesomeVersionStrategy.CALVER,
        AwesomeVersionStrategy.SEMVER,
        AwesomeVersionStrategy.SIMPLEVER,
        AwesomeVersionStrategy.BUILDVER,
        AwesomeVersionStrategy.PEP440,
    ]
    try:
        AwesomeVersion(value, ensure_strategy=strategies)
    except AwesomeVersionException as err:
        raise vol.Invalid(f"'{value}' is not a valid version.") from err
    return value


INTEGRATION_TYPES = ["device", "entity", "hardware", "helper", "hub", "service", "system"]
IOT_CLASSES = [
    "assumed_state", "calculated", "cloud_polling", "cloud_push", "local_polling", "local_push",
]  # fmt: skip
QUALITY_SCALES = [
    "bronze",
    "silver",
    "gold",
    "platinum",
    "custom",
    "no_score",
    "internal",
    "legacy",
]

# The matcher schemas (zeroconf, ssdp, bluetooth, homekit, dhcp, usb) are kept to their
# outer type: q4d uses none of them.
HASSFEST_MANIFEST = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("name"): str,
        vol.Optional("integration_type"): vol.In(INTEGRATION_TYPES),
        vol.Optional("config_flow"): bool,
        vol.Optional("mqtt"): [str],
        vol.Optional("zeroconf"): list,
        vol.Optional("ssdp"): list,
        vol.Optional("bluetooth"): list,
        vol.Optional("homekit"): dict,
        vol.Optional("dhcp"): list,
        vol.Optional("usb"): list,
        vol.Required("documentation"): vol.All(url, custom_documentation_url),
        vol.Optional("quality_scale"): vol.In(QUALITY_SCALES),
        vol.Optional("requirements"): [str],
        vol.Optional("dependencies"): [str],
        vol.Optional("after_dependencies"): [str],
        vol.Required("codeowners"): [str],
        vol.Optional("loggers"): [str],
        vol.Optional("disabled"): str,
        vol.Optional("iot_class"): vol.In(IOT_CLASSES),
        vol.Optional("single_config_entry"): bool,
        vol.Optional("preview_features"): dict,
        vol.Optional("version"): vol.All(str, verify_version),
        vol.Optional("issue_tracker"): url,
        vol.Optional("import_executor"): bool,
    },
    extra=vol.PREVENT_EXTRA,
)


def manifest_problems(manifest: dict[str, Any], folder: str) -> list[str]:
    problems = []
    for name, schema in (("HACS", HACS_MANIFEST), ("hassfest", HASSFEST_MANIFEST)):
        try:
            schema(manifest)
        except vol.Invalid as err:
            problems.append(f"{name}: {err}")
    if manifest.get("domain") != folder:
        problems.append("Domain does not match dir name")
    if "iot_class" not in manifest:
        problems.append("Domain is missing an IoT Class")
    if not manifest.get("version"):
        problems.append("No 'version' key in the manifest file.")
    keys = list(manifest)
    if sorted(keys, key=lambda k: {"domain": ".domain", "name": ".name"}.get(k, k)) != keys:
        problems.append("Manifest keys are not sorted correctly: domain, name, then alphabetical")
    return problems


# --- brand images (the brands proxy's names; home-assistant/brands' size rules) -------

BRAND_IMAGES = {
    f"{dark}{kind}{hdpi}.png"
    for dark in ("", "dark_")
    for kind in ("icon", "logo")
    for hdpi in ("", "@2x")
}


def brand_problems(folder: Path) -> list[str]:
    if not (folder / "icon.png").is_file():
        # HACS's brands check looks for exactly this file (else the brands website)
        return [f"{folder.name}/icon.png is missing"]
    problems = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name not in BRAND_IMAGES:
            problems.append(f"{name}: not an image name Home Assistant serves")
            continue
        try:
            with Image.open(path) as image:
                image.load()  # decodes it all: a truncated or corrupt file fails here
                fmt, (width, height) = image.format, image.size
        except (OSError, SyntaxError) as err:
            problems.append(f"{name}: not a readable image ({err})")
            continue
        if fmt != "PNG":
            problems.append(f"{name}: {fmt}, not PNG")
        hdpi = "@2x" in name
        if "icon" in name:
            side = 512 if hdpi else 256
            if (width, height) != (side, side):
                problems.append(f"{name}: {width}x{height}, must be {side}x{side}")
        else:
            low, high = (256, 512) if hdpi else (128, 256)
            if not low <= min(width, height) <= high:
                problems.append(f"{name}: shortest side {min(width, height)}, not {low}-{high}")
        if hdpi and not (folder / name.replace("@2x", "")).exists():
            problems.append(f"{name}: the normal version is missing")
    # A copy where the fallback would serve the same image is refused as redundant.
    for copy, original in (
        ("logo.png", "icon.png"),
        ("logo@2x.png", "icon@2x.png"),
        ("dark_logo.png", "dark_icon.png"),
        ("dark_logo@2x.png", "dark_icon@2x.png"),
        ("dark_icon.png", "icon.png"),
        ("dark_icon@2x.png", "icon@2x.png"),
        ("dark_logo.png", "logo.png"),
        ("dark_logo@2x.png", "logo@2x.png"),
        ("icon@2x.png", "icon.png"),
        ("logo@2x.png", "logo.png"),
        ("dark_icon@2x.png", "dark_icon.png"),
        ("dark_logo@2x.png", "dark_logo.png"),
    ):
        a, b = folder / copy, folder / original
        if a.exists() and b.exists() and a.read_bytes() == b.read_bytes():
            problems.append(f"{copy} is identical to {original}")
    return problems


# --- the repository as it is ------------------------------------------------------------


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def test_layout() -> None:
    """HACS installs the first folder under custom_components/: there must be one only,
    with the manifest, and the integration is not in the repository's root."""
    folders = [
        p for p in (ROOT / "custom_components").iterdir() if p.is_dir() and p.name != "__pycache__"
    ]
    assert folders == [INTEGRATION]
    assert (INTEGRATION / "manifest.json").is_file()
    assert not load_json(ROOT / "hacs.json").get("content_in_root", False)


def test_hacs_json() -> None:
    assert hacs_json_problems(load_json(ROOT / "hacs.json")) == []


def test_hacs_json_minimum_home_assistant() -> None:
    """HACS refuses the download on an older Home Assistant than hacs.json names: that
    must be the oldest release the tests run on (requirements-dev.txt)."""
    hacs = load_json(ROOT / "hacs.json")
    pinned = re.search(r"^homeassistant==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.M)
    assert pinned
    oldest = AwesomeVersion(pinned[1])
    declared = AwesomeVersion(hacs["homeassistant"])
    assert declared <= oldest
    assert (declared.section(0), declared.section(1)) == (oldest.section(0), oldest.section(1))


def test_manifest() -> None:
    manifest = load_json(INTEGRATION / "manifest.json")
    assert manifest_problems(manifest, INTEGRATION.name) == []


def test_domain_is_not_a_core_integration() -> None:
    """hassfest warns, and Home Assistant would load the custom one over a core one."""
    assert find_spec(f"homeassistant.components.{INTEGRATION.name}") is None


def test_brand_images() -> None:
    assert brand_problems(INTEGRATION / "brand") == []


def test_readme() -> None:
    """HACS's information check, and what it renders (render_readme)."""
    assert load_json(ROOT / "hacs.json").get("render_readme") is True
    assert (ROOT / "README.md").read_text().startswith("# ")


MIT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
to whom the Software is furnished to do so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.
"""


def test_license() -> None:
    """The license pyproject.toml declares, as the file GitHub reads for HACS's license
    check (an OSI-approved SPDX id; MIT is on HACS's list of common ones)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    lines = (ROOT / "LICENSE").read_text().splitlines()
    assert lines[0] == "MIT License"
    assert re.fullmatch(r"Copyright \(c\) 20\d\d the q4d authors", lines[2])
    assert " ".join(" ".join(lines[3:]).split()) == " ".join(MIT.split())


# --- the checks catch what they are for ----------------------------------------------


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: without(m, "version"), "No 'version' key"),
        (lambda m: {**m, "version": "one"}, "not a valid version"),
        (lambda m: {**without(m, "domain"), "domain": "q4d"}, "not sorted correctly"),
        (lambda m: {**m, "homepage": "https://example.org"}, "extra keys not allowed"),
        (lambda m: {**m, "documentation": "http://example.org"}, "not prefixed with https"),
        (
            lambda m: {**m, "documentation": "https://www.home-assistant.io/integrations/q4d"},
            "custom integration documentation",
        ),
        (lambda m: without(m, "issue_tracker"), "HACS: required key not provided"),
        (lambda m: without(m, "iot_class"), "missing an IoT Class"),
        (lambda m: {**m, "domain": "q4e"}, "does not match dir name"),
    ],
)
def test_manifest_check_catches(change: Any, problem: str) -> None:
    manifest = change(load_json(INTEGRATION / "manifest.json"))
    found = manifest_problems(manifest, INTEGRATION.name)
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda h: {**h, "domains": ["sensor"]}, "extra keys not allowed"),
        (lambda h: without(h, "name"), "required key not provided"),
        (lambda h: {**h, "render_readme": "yes"}, "expected bool"),
        (lambda h: {**h, "zip_release": True}, "filename is not set"),
    ],
)
def test_hacs_json_check_catches(change: Any, problem: str) -> None:
    found = hacs_json_problems(change(load_json(ROOT / "hacs.json")))
    assert any(problem in p for p in found), found


def _resize(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        image.resize(size).save(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: (d / "icon.png").unlink(), "icon.png is missing"),
        (lambda d: _resize(d / "icon.png", (256, 255)), "must be 256x256"),
        (lambda d: _resize(d / "logo@2x.png", (1200, 200)), "shortest side 200, not 256-512"),
        (
            lambda d: shutil.copy(d / "icon.png", d / "logo.png"),
            "logo.png is identical to icon.png",
        ),
        (lambda d: shutil.copy(d / "icon.png", d / "brand.png"), "brand.png: not an image name"),
        (
            lambda d: (d / "logo.png").write_bytes((d / "logo.png").read_bytes()[:-200]),
            "logo.png: not a readable image",
        ),
        (lambda d: (d / "logo.png").unlink(), "logo@2x.png: the normal version is missing"),
    ],
)
def test_brand_check_catches(tmp_path: Path, change: Any, problem: str) -> None:
    folder = shutil.copytree(INTEGRATION / "brand", tmp_path / "brand")
    change(folder)
    found = brand_problems(folder)
    assert any(problem in p for p in found), found
