"""Q4D bridge: seedbox completion events in, verified payloads and Home Assistant state out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("q4d-bridge")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
