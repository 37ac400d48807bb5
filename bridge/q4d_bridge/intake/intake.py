"""Intake: a completion from MQTT (or from reconciliation) becomes a stored item, a
counted duplicate, a recorded and counted ignored completion, or a stored, announced
rejection (a Q4D-classic one answered NOPE on `Label`), always committed before the
message is acknowledged; and the seedboxes' event numbers are checked for events that
never came."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ..config.model import Config
from ..lifecycle.machine import Announcer, Lifecycle
from ..models import Item, Label
from ..mqtt.codec import RejectedEvent
from ..mqtt.events import classic_hash, parse_sequence, sequence_in
from ..mqtt.payloads import classic_label_payload
from ..mqtt.topics import Topics
from ..persistence.ignored import record_ignored
from ..persistence.store import Message, Store
from .decode import Accepted, Rejected, decode
from .sequence import Gap, Sequences

_LOGGER = logging.getLogger(__name__)
SEQUENCE_CHECK = 10.0  # seconds between looks for completion events that never arrived


class Intake:
    def __init__(
        self,
        config: Config,
        topics: Topics,
        store: Store,
        lifecycle: Lifecycle,
        announcer: Announcer,
        *,
        queued: Callable[[], None],
    ) -> None:
        self.config = config
        self.topics = topics
        self.store = store
        self.lifecycle = lifecycle
        self.announcer = announcer
        self.sequences = Sequences(store)
        self.queued = queued  # a new item: the scheduler may start it

    def on_completion(self, topic: str, payload: bytes) -> None:
        outcome = decode(
            topic,
            payload,
            topics=self.topics,
            classic=self.config.classic,
            seedboxes=self.config.seedboxes,
            routing=self.config.routing,
        )
        numbered: tuple[str, int] | None = None
        if isinstance(outcome, Accepted):
            self.admit(outcome)
            event = outcome.event
            if event.stream is not None and event.seq is not None:
                numbered = (event.stream, event.seq)
        else:
            self.reject(topic, payload, outcome)
            numbered = sequence_in(payload)
        seedbox = self.topics.seedbox_of(topic)
        if numbered is not None and seedbox is not None and seedbox in self.config.seedboxes:
            self.sequences.received(seedbox, *numbered, time.time())

    def on_sequence(self, topic: str, payload: bytes) -> None:
        """A seedbox outbox's last sent number (retained)."""
        seedbox = self.topics.seedbox_of(topic, "sequence")
        if seedbox is None or seedbox not in self.config.seedboxes:
            return  # a seedbox this bridge does not serve (another bridge's, or removed)
        try:
            stream, seq = parse_sequence(payload)
        except RejectedEvent as err:
            self.reject(topic, payload, Rejected(err.reason, err.detail, seedbox))
            return
        self.sequences.announced(seedbox, stream, seq, time.time())

    def admit(self, outcome: Accepted) -> Item | None:
        """Store an accepted event as a new item (returned) or count it as a duplicate;
        one an ignore rule matched is recorded instead (None)."""
        if outcome.resolution.ignore:
            self.ignore(outcome)
            return None
        admission = self.store.admit(
            [(outcome.event, outcome.resolution)],
            messages_for=lambda new: [
                self.announcer.event_message("queued", new),
                *self.announcer.label_messages(new, Label.QUEUED),
            ],
            duplicate_messages=lambda known: (
                [
                    self.announcer.event_message(
                        "duplicate",
                        self.lifecycle.get(known.item.id) or known.item,
                        reason=known.reason,
                    )
                ]
                if known.grabbed_again_by is None
                else []
            ),
        )[0]
        item = admission.item
        if admission.grabbed_again_by is not None:
            item = self.lifecycle.get(item.id) or item
            _LOGGER.info("%s %r grabbed again: fetched for request %s",
                         item.id, item.name, admission.grabbed_again_by)  # fmt: skip
            self.lifecycle.grabbed_again(item, admission.grabbed_again_by)
            self.queued()
            return item
        if admission.duplicate:
            _LOGGER.info(
                "duplicate event %s for %s (%s)", outcome.event.event_id, item.id, admission.reason
            )
            self.announcer.outbox_pending()
            self.announcer.state_changed()
            return None
        self.lifecycle.admitted(item)
        self.queued()
        return item

    def ignore(self, outcome: Accepted) -> None:
        """Left on the seedbox: no item, no label; recorded, counted and announced once
        per torrent, whatever resends it."""
        event = outcome.event
        rule = self.config.routing.rule_name(outcome.resolution.rule)
        notice = self.announcer.event_message(
            "ignored", seedbox=event.seedbox, event_id=event.event_id, hash=event.hash,
            name=event.name, path=event.path, category=event.category, rule=rule,
        )  # fmt: skip
        if not record_ignored(self.store, event, rule, [notice]):
            _LOGGER.debug("ignored again: %s (%s)", event.name, event.event_id)
            return
        _LOGGER.info("ignored %s on %s (%s): left on the seedbox", event.name, event.seedbox, rule)
        self.announcer.outbox_pending()
        self.announcer.state_changed()

    def reject(self, topic: str, payload: bytes, outcome: Rejected) -> None:
        """Stored, counted (for its seedbox too, if configured) and announced with the
        seedbox and torrent name when known: never the payload itself."""
        _LOGGER.warning("rejected event on %s: %s: %s", topic, outcome.reason, outcome.detail)
        notice = self.announcer.event_message(
            "rejected", reason=outcome.reason, detail=outcome.detail, topic=topic,
            seedbox=outcome.seedbox, name=outcome.name,
        )  # fmt: skip
        messages = [notice, *self._classic_nope(topic, payload)]
        seedbox = outcome.seedbox if outcome.seedbox in self.config.seedboxes else None
        self.store.record_rejected(
            topic, payload, outcome.reason, outcome.detail, messages, seedbox=seedbox
        )
        self.announcer.outbox_pending()
        self.announcer.state_changed()

    def _classic_nope(self, topic: str, payload: bytes) -> list[Message]:
        """Q4D's hook labels a torrent QUEUED as it sends its `Down` line, and nothing
        else would change that label for a line the bridge rejects: answer NOPE, the
        label LabelD.sh applies for a failed transfer."""
        classic = self.config.classic
        if not (classic.enabled and classic.labels) or topic != classic.down_topic:
            return []
        info_hash = classic_hash(payload)
        if info_hash is None:
            return []  # NotUsed or no hash at all: Q4D labels nothing either
        return [Message(classic.label_topic, classic_label_payload(info_hash, Label.FAILED))]

    async def watch_sequences(self, look_for_lost: Callable[[str], Awaitable[object]]) -> None:
        """Say when completions numbered by a seedbox never arrived, and look for them
        (`look_for_lost`: reconciliation with its torrent client, which finds what the
        broker dropped)."""
        while True:
            await asyncio.sleep(SEQUENCE_CHECK)
            gaps = self.sequences.overdue(time.time(), self._lost_notice)
            if gaps:
                self.announcer.outbox_pending()
                self.announcer.state_changed()
            for gap in gaps:
                _LOGGER.warning(
                    "seedbox %s: %d completion event(s) never arrived (numbers %d-%d of "
                    "stream %s): a broker that dropped queued messages (max_queued_messages), "
                    "or an outbox lost on the seedbox",
                    gap.seedbox, gap.count, gap.first, gap.last, gap.stream,
                )  # fmt: skip
                try:
                    await look_for_lost(gap.seedbox)
                except Exception:  # the periodic reconciliation tries again
                    _LOGGER.exception("seedbox %s: looking for lost events failed", gap.seedbox)

    def _lost_notice(self, gap: Gap) -> Message:
        return self.announcer.event_message(
            "events_lost", seedbox=gap.seedbox, stream=gap.stream, count=gap.count,
            first=gap.first, last=gap.last,
        )  # fmt: skip
