"""The container's shell scripts pass shellcheck (scripts/test checks the older ones):
the base image and wheels makers, and the image's entrypoint and apt helper, which run
under Debian's dash and so must be POSIX sh."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers.podman import REPO

SCRIPTS = [
    "scripts/base-image",
    "scripts/container-wheels",
    "container/entrypoint",
    "container/apt-install-missing",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_clean(script: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing (scripts/setup installs it)")
    result = subprocess.run(
        ["shellcheck", "--external-sources", str(REPO / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"
