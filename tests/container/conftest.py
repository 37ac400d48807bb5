"""Fixtures for the container tests: podman (tests/helpers/podman.py) and the bridge's
image, built once per session from the real Containerfile on the local base."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import podman
from tests.helpers.podman import base_image_name, container_wheels, podman_available

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter

__all__ = ["base_image_name", "bridge_image", "container_wheels", "podman_available"]

IMAGE_TAG = "localhost/q4d-bridge:test"


@pytest.fixture(scope="session")
def bridge_image(base_image_name: str, container_wheels: Path) -> str:
    built = podman.build(
        podman.REPO / "Containerfile",
        podman.REPO,
        IMAGE_TAG,
        build_args={"BUILD_FROM": base_image_name, "WHEELS": "/wheels"},
        volumes={container_wheels: "/wheels"},
    )
    podman.measure("bridge image build", f"{built.seconds:.0f} s")
    podman.measure("bridge image size", f"{podman.image_size(IMAGE_TAG) / 2**20:.0f} MiB")
    podman.measure("base image size", f"{podman.image_size(base_image_name) / 2**20:.0f} MiB")
    return built.tag


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    # the add-on's figures are tests/addon's conftest's to print
    figures = {k: v for k, v in podman.MEASUREMENTS.items() if not k.startswith("add-on ")}
    if figures:
        terminalreporter.section("container measurements")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")
