"""Runs the post-processing steps of landed items (one task per item, steps in order):
each recorded as it starts and ends, a transient error retried with backoff, a
permanent one failing the item with its payload where it landed. After a crash or a stop
the item resumes at the step it was in, which runs again: steps are idempotent."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path

from ..config.model import Config
from ..models import Item, ItemState, StepState
from ..postprocess.base import Landed, Step, StepError
from ..postprocess.steps import close_steps
from .machine import Lifecycle
from .policy import retry_delay

_LOGGER = logging.getLogger(__name__)
# Steps that do not read the landed payload: the seedbox's clean-up removes the
# seedbox's copy, and runs also when an import before it moved the landed one away.
WITHOUT_PAYLOAD = frozenset({"cleanup"})


class PostRunner:
    def __init__(self, config: Config, lifecycle: Lifecycle, steps: Mapping[str, Step]) -> None:
        self.config = config
        self.lifecycle = lifecycle
        self.steps = steps
        self.running: dict[str, asyncio.Task[None]] = {}
        self._rng = random.Random()  # noqa: S311 - retry jitter, not cryptography

    def launch(self, item: Item) -> None:
        if item.id in self.running:
            return
        task = asyncio.create_task(self._run(item), name=f"post-{item.id}")
        self.running[item.id] = task
        task.add_done_callback(lambda _: self.running.pop(item.id, None))

    def cancel(self, item_id: str) -> bool:
        task = self.running.get(item_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def stop(self) -> None:
        """Bridge shutdown: the steps stop where they are and run again on the next start."""
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        await close_steps(self.steps)

    async def _run(self, item: Item) -> None:
        if not self.config.serves(item):  # its seedbox or destination left (live.py)
            self.lifecycle.unconfigured(item)
            return
        root = self.config.routing.destinations[item.destination]
        landed = Landed(item.id, item.name, item.hash, item.seedbox, item.category,
                        Path(item.local_path), root, item.plan, item.remote_path)  # fmt: skip
        for status in item.steps:
            if status.state is StepState.DONE:
                continue
            gone = not (landed.path.exists() or landed.path.is_symlink())
            if gone and status.name not in WITHOUT_PAYLOAD:
                self.lifecycle.step_failed(item, status.name, f"{landed.path} is gone")
                return
            if not await self._step(item, status.name, landed):
                return
        self.lifecycle.processed(item)

    async def _step(self, item: Item, name: str, landed: Landed) -> bool:
        """Run one step to its end; False when it failed the item."""
        step = self.steps.get(name)
        if step is None:  # a plan made by a bridge that had this step
            self.lifecycle.step_failed(item, name, "this bridge cannot run this step")
            return False
        transfers = self.config.transfers
        if item.next_attempt_at is not None:  # a retry that was due when the bridge stopped
            await asyncio.sleep(max(0.0, item.next_attempt_at - time.time()))
        while True:
            self.lifecycle.step_started(item, name)
            try:
                detail = await step.run(landed)
            except StepError as err:
                attempts = self.lifecycle.step_of(item, name).attempts
                if err.transient and attempts < transfers.max_attempts:
                    delay = retry_delay(attempts, transfers.retry_initial, transfers.retry_max,
                                        self._rng)  # fmt: skip
                    self.lifecycle.step_retry(item, name, str(err), time.time() + delay)
                    await asyncio.sleep(delay)
                    continue
                self.lifecycle.step_failed(item, name, str(err))
                return False
            except Exception as err:
                _LOGGER.exception("%s of %s crashed", name, item.id)
                self.lifecycle.step_failed(item, name, f"{type(err).__name__}: {err}")
                return False
            if item.state is not ItemState.PROCESSING:  # cancelled while the step ran
                return False
            self.lifecycle.step_done(item, name, detail)
            return True
