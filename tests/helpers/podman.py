"""podman for tests: the project's containers.conf, the local base image and wheels,
builds with a timeout, containers run and removed by their id.

    from tests.helpers import podman
    reason = podman.unavailable()          # None, or why no container can run here
    base = podman.base_image()             # "localhost/q4d-base:trixie" (cached; offline)
    wheels = podman.wheels_dir()           # the bridge's dependency wheels (offline)
    built = podman.build(Path("Containerfile"), REPO, "localhost/x:test",
                         build_args={"BUILD_FROM": base, "WHEELS": "/wheels"},
                         volumes={wheels: "/wheels"})
    with podman.running(built.tag, "run", env={...}, volumes={...}) as box:
        box.logs(); box.exec("id"); box.stop()   # removed by id on leaving, whatever happened

Fixtures (import them into a conftest.py): `podman_available` skips where podman or runc
is missing; `base_image_name` and `container_wheels` fail with the command to run when
scripts/setup has not made them (tests reach nothing beyond loopback, so they never
download). Builds run `--network none`: everything comes from the base and the wheels.
`measure(name, value)` records a figure that tests/container/conftest.py prints at the
end of the run. Secrets go to containers as mounted files, never in `env`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "container" / "containers.conf"
COMMAND_TIMEOUT = 120.0
BUILD_TIMEOUT = 900.0
STOP_TIMEOUT = 30  # seconds podman stop waits after SIGTERM before SIGKILL
MEASUREMENTS: dict[str, str] = {}


def measure(name: str, value: str) -> None:
    MEASUREMENTS[name] = value


def environ() -> dict[str, str]:
    """This process's environment with the project's containers.conf (unless one is set)."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def podman(
    *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`podman ARGS`, its output as text; a failure raises with podman's own words."""
    result = subprocess.run(
        ["podman", *args],
        env=environ(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"podman {' '.join(args[:3])} … exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result


def unavailable() -> str | None:
    """Why podman cannot run containers here, or None."""
    for tool, package in (("podman", "podman"), ("runc", "runc")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package}; scripts/setup installs it)"
    try:
        result = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    except subprocess.TimeoutExpired:
        return "podman info did not answer within its timeout"
    if result.returncode != 0:
        return f"podman info fails: {result.stderr.strip()[-500:]}"
    return None


def _script(name: str) -> str:
    """A scripts/ tool in its --offline mode: its last output line, or a clear failure."""
    result = subprocess.run(
        [str(REPO / "scripts" / name), "--offline"],
        env=environ(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{name} --offline: {result.stderr.strip()}")
    return result.stdout.strip().splitlines()[-1]


def base_image() -> str:
    """The local Debian base image's name, imported from its cached root if need be."""
    return _script("base-image")


def wheels_dir() -> Path:
    """The wheelhouse scripts/setup makes (scripts/wheelhouse): the bridge's dependencies
    at the tested versions, which the builds install from with no network."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    wheelhouse = cache / "q4d" / "wheelhouse"
    if not (wheelhouse / ".q4d-made").is_file():
        raise RuntimeError(f"{wheelhouse} is not made yet: run scripts/setup")
    return wheelhouse


def image_id(tag: str) -> str | None:
    result = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def image_size(tag: str) -> int:
    """The image's size in bytes, as `podman images` shows it."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float  # how long the build took
    log: str


def build(
    containerfile: Path,
    context: Path,
    tag: str,
    *,
    build_args: Mapping[str, str] | None = None,
    volumes: Mapping[Path, str] | None = None,
    layers: bool = False,
    timeout: float = BUILD_TIMEOUT,
) -> Built:
    """`podman build` with no network, in docker format (OCI images drop HEALTHCHECK);
    the image it replaces under `tag` is removed once the new one is made. Without
    `layers` no step is cached: a build takes seconds longer, and repeated runs leave
    no intermediate images behind."""
    args = ["build", "--format", "docker", "--network", "none", "--file", str(containerfile)]
    args += ["--tag", tag, f"--layers={str(layers).lower()}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    for host, inside in (volumes or {}).items():
        args += ["--volume", f"{host}:{inside}:ro"]
    previous = image_id(tag)
    started = time.monotonic()
    result = podman(*args, str(context), timeout=timeout, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"podman build of {containerfile} failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-6000:]}"
        )
    if previous is not None and previous != image_id(tag):
        podman("rmi", previous, check=False)  # still in use by a container: it stays
    return Built(tag, seconds, result.stdout + result.stderr)


@dataclass
class Container:
    """A container started by `running`; every call names it by its id."""

    id: str

    def logs(self) -> str:
        result = podman("logs", self.id, check=False)
        return result.stdout + result.stderr

    def state(self, field: str) -> str:
        return podman("inspect", "--format", f"{{{{.State.{field}}}}}", self.id).stdout.strip()

    def running(self) -> bool:
        return self.state("Running") == "true"

    def wait(self, timeout: float) -> int:
        """The exit code once the container has stopped on its own."""
        return int(podman("wait", self.id, timeout=timeout).stdout.strip().splitlines()[-1])

    def stop(self, grace: int = STOP_TIMEOUT) -> int:
        """SIGTERM (the image's STOPSIGNAL), SIGKILL after `grace` s; the exit code."""
        podman("stop", "--time", str(grace), self.id, timeout=grace + COMMAND_TIMEOUT)
        return int(self.state("ExitCode"))

    def exec(
        self, *argv: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        args = ["exec"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        return podman(*args, self.id, *argv, check=False)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK, run once now (exit 0: healthy)."""
        return podman("healthcheck", "run", self.id, check=False)


def _run_args(
    env: Mapping[str, str] | None,
    volumes: Mapping[Path, str] | None,
    user: str | None,
    entrypoint: str | None,
    network: str,
    options: Sequence[str],
) -> list[str]:
    args = ["--network", network, *options]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    for host, inside in (volumes or {}).items():
        args += ["--volume", f"{host}:{inside}"]
    if user is not None:
        args += ["--user", user]
    if entrypoint is not None:
        args += ["--entrypoint", entrypoint]
    return args


@contextlib.contextmanager
def running(
    image: str,
    *command: str,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[Path, str] | None = None,
    user: str | None = None,
    entrypoint: str | None = None,
    network: str = "host",
    options: Sequence[str] = (),
) -> Iterator[Container]:
    """A detached container (host network: loopback is the test's); removed on exit.
    Volume targets may end in `:ro`; `options` are more `podman run` options. Secrets go
    in files, never in `env`."""
    args = _run_args(env, volumes, user, entrypoint, network, options)
    with tempfile.TemporaryDirectory(prefix="q4d-cid-") as scratch:
        # podman writes the id as soon as the container exists: a run that fails after
        # that still leaves one to remove.
        cidfile = Path(scratch) / "cid"
        try:
            podman("run", "--detach", "--cidfile", str(cidfile), *args, image, *command)
            yield Container(cidfile.read_text().strip())
        finally:
            if cidfile.exists():
                podman("rm", "--force", "--time", "5", cidfile.read_text().strip(), check=False)


def run(
    image: str,
    *command: str,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[Path, str] | None = None,
    user: str | None = None,
    entrypoint: str | None = None,
    network: str = "none",
    options: Sequence[str] = (),
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """A container run to its end and removed (`podman run --rm`); its output and code."""
    args = _run_args(env, volumes, user, entrypoint, network, options)
    return podman("run", "--rm", *args, image, *command, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def podman_available() -> None:
    reason = unavailable()
    if reason is not None:
        # CI has podman (scripts/setup installs it): there a missing runtime is a failure,
        # never a quiet skip of the container tests.
        if os.environ.get("CI"):
            pytest.fail(f"no container runtime in CI: {reason}")
        pytest.skip(f"no container runtime: {reason}")


@pytest.fixture(scope="session")
def base_image_name(podman_available: None) -> str:
    return base_image()


@pytest.fixture(scope="session")
def container_wheels() -> Path:
    return wheels_dir()
