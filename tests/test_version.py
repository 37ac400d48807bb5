"""One version for the bridge, the seedbox side, the integration and the add-on.

It is set in bridge/q4d_bridge/__init__.py only: pyproject.toml reads it from there, and
every other place that must carry a copy (files Home Assistant, HACS and the Supervisor
read as they are) is held to it here.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from q4d_bridge import __version__

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon" / "q4d-bridge"
# Keep a Changelog: "## [1.2.3] - 2026-12-24" (or "- unreleased" until it is tagged).
CHANGELOG_ENTRY = re.compile(r"^## \[(?P<version>[^\]]+)\]", re.MULTILINE)


def literal_version(path: Path) -> str:
    """The string assigned to __version__ in a module, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise AssertionError(f"{path}: no literal __version__ = '...'")


def top_changelog_version(text: str) -> str:
    """The version of the first entry that has one ([Unreleased] has none)."""
    versions = [m["version"] for m in CHANGELOG_ENTRY.finditer(text)]
    released = [v for v in versions if v.lower() != "unreleased"]
    assert released, "CHANGELOG.md has no '## [x.y.z]' entry"
    return released[0]


def test_version_is_semantic() -> None:
    """x.y.z: what Semantic Versioning, HACS's update check and the Supervisor compare."""
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__), __version__


def test_bridge_module_is_the_one_place() -> None:
    """pyproject.toml takes the version from the package (setuptools' dynamic version),
    so a source checkout and a built wheel report the same one."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "q4d_bridge.__version__"
    assert literal_version(ROOT / "bridge" / "q4d_bridge" / "__init__.py") == __version__


def test_integration_manifest() -> None:
    manifest = json.loads((ROOT / "custom_components" / "q4d" / "manifest.json").read_text())
    assert manifest["version"] == __version__


def test_seedbox_side() -> None:
    """Read from the file: the seedbox package must stay importable on Python 3.8."""
    assert literal_version(ROOT / "seedbox" / "q4d_seedbox" / "__init__.py") == __version__


def test_addon() -> None:
    config = yaml.safe_load((ADDON / "config.yaml").read_text())
    # The Supervisor takes the version as a string; YAML would read 0.1 as a float.
    assert config["version"] == __version__
    # The Supervisor passes BUILD_VERSION; a build by hand gets the Dockerfile's default,
    # which names the q4d-bridge release the image installs.
    defaults = re.findall(r"^ARG BUILD_VERSION=(\S+)$", (ADDON / "Dockerfile").read_text(), re.M)
    assert defaults == [__version__]


def test_changelog_top_entry() -> None:
    assert top_changelog_version((ROOT / "CHANGELOG.md").read_text()) == __version__


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-01-02\n\n## [0.1.0] - 2026-12-24\n",
            "0.2.0",
        ),
        ("# Changelog\n\n## [0.1.0] - unreleased\n", "0.1.0"),
    ],
)
def test_top_changelog_version_reads_the_newest(text: str, expected: str) -> None:
    assert top_changelog_version(text) == expected


def test_literal_version_refuses_a_computed_one(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('from importlib.metadata import version\n__version__ = version("x")\n')
    with pytest.raises(AssertionError, match="no literal"):
        literal_version(module)
