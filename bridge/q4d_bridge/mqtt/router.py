"""Incoming MQTT messages to the part that handles them, by topic."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import aiomqtt

from .topics import Topics

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]


class Router:
    def __init__(
        self,
        topics: Topics,
        *,
        atomic: Callable[[], AbstractContextManager[object]],
        command: Callable[[bytes], None],
        sequence: Handler,
        completion: Handler,
    ) -> None:
        self.topics = topics
        self.atomic = atomic  # the store's transaction
        self.command = command
        self.sequence = sequence
        self.completion = completion  # v1 completions and Q4D-classic `Down`

    def handle_batch(self, messages: Sequence[aiomqtt.Message]) -> None:
        """Messages that arrived together, recorded in one transaction: one commit where
        each would pay its own, and the link acknowledges them all once it is done. Each
        handler's own transaction is a savepoint in it, so a bad message rolls back alone;
        a store error raises, and then none of them is acknowledged."""
        with self.atomic():
            for message in messages:
                self.handle(message)

    def handle(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        try:
            if topic == self.topics.command:
                self.command(payload)
            elif self.topics.seedbox_of(topic, "sequence") is not None:
                self.sequence(topic, payload)
            else:
                self.completion(topic, payload)
        except sqlite3.Error:
            raise
        except Exception:  # one bad message must never take the bridge down
            _LOGGER.exception("error handling message on %s", topic)
