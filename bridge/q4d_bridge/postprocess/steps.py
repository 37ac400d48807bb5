"""The steps this bridge can run, built from its configuration."""

from __future__ import annotations

from ..config.model import Config
from .base import Step


def post_steps(config: Config) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    return steps
