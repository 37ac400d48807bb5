"""The orchestrator: MQTT in and out, the store, the scheduler and the transfer tasks.

Every incoming event is committed to the store before it is acknowledged to the broker
(manual PUBACK), so an event is never lost between the broker and the queue: if the
bridge dies before the commit, the broker re-delivers it; after the commit, the
re-delivery is recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .clients import make_node
from .clients.base import NodeError
from .clients.monitor import NodeMonitor
from .clients.reconcile import missed_completions
from .config.model import Config
from .intake.decode import Accepted, Rejected, accept, decode
from .intake.sequence import Gap, Sequences
from .lifecycle.policy import (
    Breaker,
    Limits,
    can_cancel,
    can_retry,
    next_wakeup,
    pick_runnable,
    retry_delay,
)
from .models import ACTIVE_STATES, FINISHED_STATES, Item, ItemState, Label
from .mqtt import commands
from .mqtt.codec import RejectedEvent
from .mqtt.commands import parse_command
from .mqtt.events import parse_sequence, sequence_in
from .mqtt.noise import paho_logger, quiet_closed_sockets
from .mqtt.payloads import command_result, item_payload
from .mqtt.publisher import MAX_IN_FLIGHT, Publisher
from .mqtt.topics import Topics
from .persistence.store import Message, Store
from .transfer.engines.base import Engine
from .transfer.engines.lftp import LftpEngine
from .transfer.engines.process import kill_leftover_writers
from .transfer.engines.rsync import RsyncEngine
from .transfer.engines.sftp import SftpEngine
from .transfer.errors import ErrorCode, TransferError
from .transfer.payload import RemoteEntry
from .transfer.pipeline import (
    Landed,
    Modes,
    discard_staging,
    process_umask,
    run_transfer,
    staging_dir,
    with_watchdog,
)
from .transfer.rates import Bandwidth, RateMeter
from .transfer.remote import SeedboxSession
from .transfer.torrents import TorrentSource

_LOGGER = logging.getLogger(__name__)


DiskFree = Callable[[Path], int]


def disk_usage_free(path: Path) -> int:
    return shutil.disk_usage(path).free


PRUNE_INTERVAL = 600.0
SEQUENCE_CHECK = 10.0  # seconds between looks for completion events that never arrived
SPACE_POLL = 30.0  # seconds between free-space readings of the destinations
# Failures that say nothing about the seedbox's health: they do not trip its breaker.
TOOL_ENGINES = frozenset({"lftp", "rsync"})
SEEDBOX_NEUTRAL = frozenset(
    {
        ErrorCode.REMOTE_MISSING,
        ErrorCode.UNSAFE_PATH,
        ErrorCode.NO_SPACE,
        ErrorCode.INSUFFICIENT_SPACE,
        ErrorCode.VERIFY_FAILED,
    }
)
RECONNECT_MAX = 60.0


class Bridge:
    def __init__(self, config: Config, *, disk_free: DiskFree = disk_usage_free) -> None:
        """disk_free: bytes free on the filesystem holding a path (injectable, so
        tests of the space checks do not depend on the machine's own disk)."""
        self.config = config
        self.disk_free = disk_free
        self.modes = Modes(config.transfers.file_mode, config.transfers.dir_mode).without(
            process_umask()
        )
        self.topics = Topics(config.broker.topic_prefix, config.bridge_id)
        self.store = Store(config.data_dir / "q4d.sqlite3")
        self.sequences = Sequences(self.store)
        self.items: dict[str, Item] = {i.id: i for i in self.store.items()}
        self.paused: bool = bool(self.store.get_setting("paused", False))
        self.limits = Limits(
            global_max=self.store.get_setting("max_concurrent", config.transfers.max_concurrent),
            per_seedbox={sb.id: sb.max_concurrent for sb in config.seedboxes.values()},
        )
        self.bandwidth = Bandwidth(
            self.store.get_setting("bandwidth_limit", config.transfers.bandwidth_limit)
        )
        self.sessions = {sb.id: SeedboxSession(sb) for sb in config.seedboxes.values()}
        self.nodes = {
            sb.id: make_node(sb.client) for sb in config.seedboxes.values() if sb.client is not None
        }
        self.torrents = {
            sb.id: TorrentSource(sb, self.sessions[sb.id], self.nodes.get(sb.id))
            for sb in config.seedboxes.values()
        }
        self._reconcile_rejected: set[str] = set()
        self.free_space: dict[str, int | None] = {}
        self._space_used = asyncio.Event()
        self._pending_answers: set[asyncio.Future[None]] = set()
        self.breakers = {
            sb.id: Breaker(config.transfers.breaker_failures, config.transfers.breaker_cooldown)
            for sb in config.seedboxes.values()
        }
        self.sftp = SftpEngine(config.transfers.sftp, self.bandwidth)
        self.engines: dict[str, Engine] = {
            "lftp": LftpEngine(
                config.transfers.lftp,
                config.data_dir / "scratch",
                bandwidth=self.bandwidth,
                slots=lambda: self.limits.global_max,
                nice=config.transfers.nice,
            ),
            "sftp": self.sftp,
            "rsync": RsyncEngine(
                config.transfers.rsync,
                bandwidth=self.bandwidth,
                slots=lambda: self.limits.global_max,
                nice=config.transfers.nice,
            ),
        }
        self.publisher = Publisher(
            topics=self.topics,
            store=self.store,
            bridge_name=config.bridge_name,
            seedbox_ids=list(config.seedboxes),
            classic_label_topic=config.classic.label_topic if config.classic.enabled else None,
            snapshot=self.snapshot,
            items=lambda: list(self.items.values()),
        )
        self.monitor = NodeMonitor(
            config.seedboxes,
            self.nodes,
            reconcile=self.reconcile_seedbox,
            on_change=self.publisher.state_changed,
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stop_reason: dict[str, str] = {}
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 - retry jitter, not cryptography
        self.connected = asyncio.Event()
        self.failed = False

    # --- lifecycle -----------------------------------------------------------------

    def recover(self) -> None:
        """Items caught mid-transfer by a crash or stop go back to the queue; their
        staging files stay, so the engine resumes from the bytes already on disk."""
        unfinished = [i for i in self.items.values() if i.state not in FINISHED_STATES]
        leftovers = kill_leftover_writers(
            staging_dir(self.config.routing.destinations[i.destination], i.id)
            for i in unfinished
            if i.destination in self.config.routing.destinations
        )
        if leftovers:
            _LOGGER.warning("stopped %d transfer process(es) left by the last run", len(leftovers))
        for item in self.items.values():
            if item.state not in FINISHED_STATES and not self._configured(item):
                item.state = ItemState.FAILED
                item.error_code = ErrorCode.NOT_CONFIGURED.value
                item.last_error = (
                    f"seedbox {item.seedbox!r} or destination {item.destination!r} "
                    "is no longer configured"
                )
                item.finished_at = item.updated_at = time.time()
                self._record(
                    item, "failed", {"code": item.error_code}, event="failed",
                    label=Label.FAILED, counters={"failed": 1},
                )  # fmt: skip
                _LOGGER.error("%s: %s", item.id, item.last_error)
                continue
            if item.state in ACTIVE_STATES:
                item.state = ItemState.QUEUED
                item.attempts = max(0, item.attempts - 1)
                item.updated_at = time.time()
                self.store.save(item, "recovered")
                _LOGGER.info("resuming %s (%s) after restart", item.id, item.name)

    async def run(self) -> None:
        quiet_closed_sockets(asyncio.get_running_loop())
        self.recover()
        self._prune()
        background = [
            asyncio.create_task(self._scheduler(), name="scheduler"),
            asyncio.create_task(self.publisher.run_flusher(), name="flusher"),
            asyncio.create_task(self.publisher.run_outbox_sender(), name="outbox"),
            asyncio.create_task(self._pruner(), name="pruner"),
            asyncio.create_task(self._watch_space(), name="space"),
            asyncio.create_task(self._watch_sequences(), name="sequences"),
        ]
        if self.nodes:
            background.append(asyncio.create_task(self.monitor.run(), name="nodes"))
        broker = (self.config.broker.host, self.config.broker.port)
        background += [
            asyncio.create_task(session.keep_connected(broker, self.connected), name=f"ssh-{sb_id}")
            for sb_id, session in self.sessions.items()
            if session.seedbox.hook_flush or session.seedbox.broker_forward_port
        ]
        mqtt_task = asyncio.create_task(self._mqtt_loop(), name="mqtt")
        for task in [*background, mqtt_task]:
            task.add_done_callback(self._background_done)
        try:
            await self._stopping.wait()
        finally:
            _LOGGER.info(
                "stopping: %d transfer(s) will resume on the next start", len(self._running)
            )
            for task in background:
                task.remove_done_callback(self._background_done)
                task.cancel()
            # A payload being verified/renamed finishes (it takes a moment); the rest stop
            # and resume from staging on the next start.
            for item_id, task in self._running.items():
                if self.items[item_id].state is not ItemState.VERIFYING:
                    task.cancel()
            await asyncio.gather(*background, *self._running.values(), return_exceptions=True)
            await self.publisher.detach(graceful=True)
            mqtt_task.remove_done_callback(self._background_done)
            mqtt_task.cancel()
            await asyncio.gather(mqtt_task, return_exceptions=True)
            for session in self.sessions.values():
                await session.close()
            await self.sftp.close()
            for node in self.nodes.values():
                await node.close()
            self.store.close()

    def stop(self, *, failed: bool = False) -> None:
        self.failed = self.failed or failed
        self._stopping.set()

    def _background_done(self, task: asyncio.Task[None]) -> None:
        """A core loop must never end while the bridge runs: stop (non-zero exit) so the
        service manager restarts it, rather than limp on with, say, no scheduler."""
        if task.cancelled():
            return
        _LOGGER.critical("%s stopped unexpectedly", task.get_name(), exc_info=task.exception())
        self.stop(failed=True)

    # --- MQTT ----------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        broker = self.config.broker
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(broker.session_expiry)
        tls_params = None
        if broker.tls is not None:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=broker.tls.ca_certs,
                certfile=broker.tls.certfile,
                keyfile=broker.tls.keyfile,
            )
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=broker.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            keepalive=broker.keepalive,
            will=aiomqtt.Will(
                self.topics.status, self.publisher.status_payload("offline"), qos=1, retain=True
            ),
            tls_params=tls_params,
            tls_insecure=broker.tls.insecure if broker.tls else None,
            timeout=10,
            logger=paho_logger(),
        )
        # aiomqtt acks on receipt; we ack only after the store commit (see module doc).
        client._client.manual_ack_set(True)
        client.pending_calls_threshold = 2 * MAX_IN_FLIGHT
        return client

    async def _mqtt_loop(self) -> None:
        delay = 1.0
        broker = self.config.broker
        while True:
            try:
                async with self._client() as client:
                    subscriptions: list[tuple[str, int]] = [
                        (self.topics.completed_filter, 1),
                        (self.topics.command, 1),
                        # retained: each (re)subscription reads every seedbox's last number
                        (self.topics.sequence_filter, 1),
                    ]
                    if self.config.classic.enabled:
                        subscriptions.append((self.config.classic.down_topic, 1))
                    await client.subscribe(subscriptions)
                    await self.publisher.attach(client)
                    self.connected.set()
                    delay = 1.0
                    _LOGGER.info("connected to MQTT broker %s:%s", broker.host, broker.port)
                    async for message in client.messages:
                        try:
                            self._on_message(message)
                        except sqlite3.Error:
                            # Not stored, so not acknowledged: the broker keeps it for
                            # the next start. A store that cannot write is fatal.
                            _LOGGER.critical("cannot record an incoming message", exc_info=True)
                            self.stop(failed=True)
                            # Leaving cleanly sends no last will: say offline ourselves.
                            await client.publish(
                                self.topics.status,
                                self.publisher.status_payload("offline"),
                                qos=1,
                                retain=True,
                            )
                            return
                        client._client.ack(message.mid, message.qos)
            except aiomqtt.MqttError as err:
                self.connected.clear()
                await self.publisher.detach(graceful=False)
                wait = delay * (0.5 + self._rng.random() / 2)
                _LOGGER.warning("MQTT connection lost (%s); reconnecting in %.1fs", err, wait)
                await asyncio.sleep(wait)
                delay = min(RECONNECT_MAX, delay * 2)

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        try:
            if topic == self.topics.command:
                self._on_command(payload)
            elif self.topics.seedbox_of(topic, "sequence") is not None:
                self._on_sequence(topic, payload)
            else:
                self.on_completion(topic, payload)
        except sqlite3.Error:
            raise
        except Exception:  # one bad message must never take the bridge down
            _LOGGER.exception("error handling message on %s", topic)

    # --- intake --------------------------------------------------------------------

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
            self._admit(outcome)
            event = outcome.event
            if event.stream is not None and event.seq is not None:
                numbered = (event.stream, event.seq)
        else:
            self._reject(topic, payload, outcome)
            numbered = sequence_in(payload)
        seedbox = self.topics.seedbox_of(topic)
        if numbered is not None and seedbox is not None and seedbox in self.config.seedboxes:
            self.sequences.received(seedbox, *numbered, time.time())

    def _on_sequence(self, topic: str, payload: bytes) -> None:
        """A seedbox outbox's last sent number (retained)."""
        seedbox = self.topics.seedbox_of(topic, "sequence")
        assert seedbox is not None
        if seedbox not in self.config.seedboxes:
            return  # a seedbox this bridge does not serve (another bridge's, or removed)
        try:
            stream, seq = parse_sequence(payload)
        except RejectedEvent as err:
            self._reject(topic, payload, Rejected(err.reason, err.detail))
            return
        self.sequences.announced(seedbox, stream, seq, time.time())

    async def _watch_sequences(self) -> None:
        """Say when completions numbered by a seedbox never arrived, and look for them
        in its torrent client (reconciliation), which finds what the broker dropped."""
        while True:
            await asyncio.sleep(SEQUENCE_CHECK)
            gaps = self.sequences.overdue(time.time(), self._lost_notice)
            if gaps:
                self.publisher.outbox_pending()
                self.publisher.state_changed()
            for gap in gaps:
                _LOGGER.warning(
                    "seedbox %s: %d completion event(s) never arrived (numbers %d-%d of "
                    "stream %s): a broker that dropped queued messages (max_queued_messages), "
                    "or an outbox lost on the seedbox%s",
                    gap.seedbox, gap.count, gap.first, gap.last, gap.stream,
                    "; asking its torrent client" if gap.seedbox in self.nodes else "",
                )  # fmt: skip
                if gap.seedbox in self.nodes:
                    try:
                        await self.rescan(gap.seedbox)
                    except Exception:  # the periodic reconciliation tries again
                        _LOGGER.exception("seedbox %s: reconciliation failed", gap.seedbox)

    def _lost_notice(self, gap: Gap) -> Message:
        return self.publisher.event_message(
            "events_lost", seedbox=gap.seedbox, stream=gap.stream, count=gap.count,
            first=gap.first, last=gap.last,
        )  # fmt: skip

    def _reject(self, topic: str, payload: bytes, outcome: Rejected) -> None:
        _LOGGER.warning("rejected event on %s: %s: %s", topic, outcome.reason, outcome.detail)
        notice = self.publisher.event_message(
            "rejected", reason=outcome.reason, detail=outcome.detail, topic=topic
        )
        self.store.record_rejected(topic, payload, outcome.reason, outcome.detail, [notice])
        self.publisher.outbox_pending()
        self.publisher.state_changed()

    def _admit(self, outcome: Accepted) -> Item | None:
        """Store an accepted event as a new item (returned) or count it as a duplicate."""
        admission = self.store.admit(
            [(outcome.event, outcome.resolution)],
            messages_for=lambda new: [
                self.publisher.event_message("queued", new),
                *self.publisher.label_messages(new, Label.QUEUED),
            ],
        )[0]
        item = admission.item
        if admission.duplicate:
            self.store.incr("duplicates")
            _LOGGER.info(
                "duplicate event %s for %s (%s)", outcome.event.event_id, item.id, admission.reason
            )
            current = self.items.get(item.id, item)
            self.store.enqueue(
                [self.publisher.event_message("duplicate", current, reason=admission.reason)]
            )
            self.publisher.outbox_pending()
            return None
        self.items[item.id] = item
        _LOGGER.info("queued %s %r -> %s", item.id, item.name, item.local_path)
        self.publisher.item(item, immediate=True)
        self.publisher.outbox_pending()
        self._wakeup.set()
        return item

    # --- reconciliation ------------------------------------------------------------

    async def reconcile_seedbox(self, seedbox_id: str) -> dict[str, Any]:
        """Enqueue completed torrents the torrent client has and no event announced."""
        seedbox = self.config.seedboxes[seedbox_id]
        node = self.nodes[seedbox_id]
        try:
            torrents = await node.completed_torrents()
        except NodeError as err:
            _LOGGER.warning("seedbox %s: reconciliation skipped: %s", seedbox_id, err)
            return {"enqueued": [], "error": str(err)}
        known = {i.hash.lower() for i in self.items.values() if i.seedbox == seedbox_id and i.hash}
        client = seedbox.client.type if seedbox.client else "unknown"
        missed = missed_completions(
            seedbox_id, client, torrents, known, seedbox.reconcile, time.time()
        )
        enqueued = []
        for event in missed:
            outcome = accept(event, seedboxes=self.config.seedboxes, routing=self.config.routing)
            if isinstance(outcome, Rejected):
                if event.hash not in self._reconcile_rejected:  # once, not every pass
                    self._reconcile_rejected.add(event.hash or "")
                    self._reject(f"reconcile/{seedbox_id}", event.path.encode(), outcome)
                continue
            item = self._admit(outcome)
            if item is not None:
                enqueued.append(item.id)
        if enqueued:
            _LOGGER.warning(
                "seedbox %s: reconciliation found %d completed torrent(s) no event announced",
                seedbox_id, len(enqueued),
            )  # fmt: skip
        return {"enqueued": enqueued, "error": None}

    async def rescan(self, seedbox_id: str | None) -> dict[str, Any]:
        if seedbox_id is not None and seedbox_id not in self.config.seedboxes:
            raise commands.CommandError("not_found", f"no seedbox {seedbox_id}")
        targets = [seedbox_id] if seedbox_id else list(self.config.seedboxes)
        results: dict[str, Any] = {}
        for sb in targets:
            if sb not in self.nodes:
                results[sb] = {"enqueued": [], "error": "no torrent client configured"}
                continue
            await self.monitor.poll(sb)
            results[sb] = await self.reconcile_seedbox(sb)
        return {"seedboxes": results}

    def _record(
        self,
        item: Item,
        history: str,
        detail: Any = None,
        *,
        event: str | None = None,
        label: Label | None = None,
        counters: dict[str, int] | None = None,
        **extra: Any,
    ) -> None:
        """Commit an item change with its history entry and the event/label announcing it,
        then publish. Everything here reaches MQTT even if the bridge dies right after."""
        messages = []
        if event is not None:
            messages.append(self.publisher.event_message(event, item, **extra))
        if label is not None:
            messages += self.publisher.label_messages(item, label)
        self.store.save(item, history, detail, messages, counters)
        self.publisher.item(item, immediate=True)
        if messages:
            self.publisher.outbox_pending()

    # --- scheduler -----------------------------------------------------------------

    async def _scheduler(self) -> None:
        while True:
            self._wakeup.clear()
            now = time.time()
            blocked = {sb for sb, breaker in self.breakers.items() if breaker.is_open(now)}
            for item in pick_runnable(
                self.items.values(), self.limits, paused=self.paused, now=now, blocked=blocked
            ):
                self._start(item, now)
            reopen = [b.open_until for b in self.breakers.values() if b.open_until is not None]
            waiting = next_wakeup(i for i in self.items.values() if i.state is ItemState.WAITING)
            due = min([*reopen, *([waiting] if waiting is not None else [])], default=None)
            timeout = None if due is None else max(0.0, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _start(self, item: Item, now: float) -> None:
        item.state = ItemState.TRANSFERRING
        item.attempts += 1
        item.started_at = now
        item.next_attempt_at = None
        item.rate = 0.0
        item.eta = None
        item.updated_at = now
        self._record(item, "started", {"attempt": item.attempts}, event="started")
        task = asyncio.create_task(self._transfer(item), name=f"transfer-{item.id}")
        self._running[item.id] = task
        task.add_done_callback(lambda done: self._transfer_done(item, done))

    def _transfer_done(self, item: Item, task: asyncio.Task[None]) -> None:
        """Runs however the task ended, even when it was cancelled before its first step
        (then _transfer never saw the stop reason, so it is applied here)."""
        self._running.pop(item.id, None)
        reason = self._stop_reason.pop(item.id, None)
        if reason is not None and task.cancelled() and item.state in ACTIVE_STATES:
            self._stopped(item, reason)
        self._wakeup.set()

    async def _transfer(self, item: Item) -> None:
        meter = RateMeter(item.size)
        activity = [time.monotonic()]

        def on_phase(state: ItemState, remote: RemoteEntry) -> None:
            activity[0] = time.monotonic()
            item.state = state
            if item.size != remote.size:
                item.size = meter.total = remote.size
            item.updated_at = time.time()
            skipped = remote.skipped if state is ItemState.TRANSFERRING else ()
            if skipped:
                _LOGGER.warning(
                    "%s: %d symlink(s) or special file(s) in the payload are not fetched: %s",
                    item.id, len(skipped), ", ".join(skipped[:10]),
                )  # fmt: skip
            self._record(item, state.value, {"skipped": list(skipped)} if skipped else None)

        def on_progress(done: int) -> None:
            if done != item.bytes_done:
                activity[0] = time.monotonic()
            meter.update(done)
            item.bytes_done = done
            item.rate = meter.rate
            item.eta = meter.eta(done)
            item.updated_at = time.time()
            self.publisher.item(item)

        def heartbeat() -> None:  # called from the hashing thread while verifying
            activity[0] = time.monotonic()

        transfers = self.config.transfers
        try:
            seedbox = self.config.seedboxes[item.seedbox]
            root = self.config.routing.destinations[item.destination]
            source = self.torrents[item.seedbox]
            landed = await with_watchdog(
                run_transfer(
                    item_id=item.id,
                    seedbox=seedbox,
                    session=self.sessions[item.seedbox],
                    engine=self.engines[self._engine_of(item)],
                    remote_path=item.remote_path,
                    root=root,
                    final_path=Path(item.local_path),
                    on_phase=on_phase,
                    on_progress=on_progress,
                    min_free_space=transfers.min_free_space,
                    modes=self.modes,
                    disk_free=self.disk_free,
                    torrent=(lambda: source.info(item.hash)) if transfers.verify else None,
                    max_repairs=transfers.max_repairs,
                    heartbeat=heartbeat,
                ),
                stall_timeout=transfers.stall_timeout,
                last_activity=lambda: activity[0],
            )
        except asyncio.CancelledError:
            reason = self._stop_reason.pop(item.id, None)
            if reason is None:
                raise  # bridge shutdown: the item resumes on the next start
            self._stopped(item, reason)
        except TransferError as err:
            self._failed(item, err)
        except Exception as err:
            _LOGGER.exception("transfer of %s crashed", item.id)
            self._failed(item, TransferError(ErrorCode.TRANSFER, f"{type(err).__name__}: {err}"))
        else:
            self._done(item, landed)

    def _engine_of(self, item: Item) -> str:
        return item.engine or self.config.seedboxes[item.seedbox].engine

    def _done(self, item: Item, landed: Landed) -> None:
        size = landed.size
        self._space_used.set()
        now = time.time()
        item.state = ItemState.DONE
        item.bytes_done = item.size = size
        item.rate = 0.0
        item.eta = None
        item.last_error = item.error_code = None
        item.finished_at = item.updated_at = now
        self.breakers[item.seedbox].success()
        detail = {
            "bytes": size,
            "seconds": now - (item.started_at or now),
            "verified": landed.verified,
            "repaired_pieces": landed.repaired_pieces,
            "skipped": list(landed.skipped),
        }
        self._record(
            item, "completed", detail, event="completed", label=Label.DONE,
            counters={"completed": 1, "bytes_transferred": size},
            verified=landed.verified, repaired_pieces=landed.repaired_pieces,
            skipped=list(landed.skipped),
        )  # fmt: skip
        _LOGGER.info("completed %s %r (%d bytes)", item.id, item.name, size)

    def _failed(self, item: Item, err: TransferError) -> None:
        now = time.time()
        item.rate = 0.0
        item.eta = None
        item.last_error = err.message
        item.error_code = err.code.value
        item.updated_at = now
        detail: dict[str, Any] = {"code": err.code.value, "message": err.message}
        transfers = self.config.transfers
        if err.code is ErrorCode.INSUFFICIENT_SPACE:
            # Not the item's fault: wait for space without spending an attempt.
            item.state = ItemState.WAITING
            item.attempts = max(0, item.attempts - 1)
            item.next_attempt_at = now + transfers.space_recheck
            self._record(item, "waiting", detail, event="waiting")
            _LOGGER.warning("%s waits for space: %s", item.id, err.message)
            return
        breaker = self.breakers.get(item.seedbox)
        if err.code not in SEEDBOX_NEUTRAL and breaker is not None and breaker.failure(now):
            self._breaker_opened(item.seedbox)
        if err.permanent or item.attempts >= transfers.max_attempts:
            item.state = ItemState.FAILED
            item.finished_at = now
            self._record(
                item, "failed", detail, event="failed", label=Label.FAILED, counters={"failed": 1}
            )
            _LOGGER.error("failed %s %r: %s (%s)", item.id, item.name, err.message, err.code.value)
            return
        delay = retry_delay(item.attempts, transfers.retry_initial, transfers.retry_max, self._rng)
        item.state = ItemState.WAITING
        item.next_attempt_at = now + delay
        self._record(item, "waiting", {**detail, "delay": delay}, event="waiting")
        _LOGGER.warning(
            "attempt %d of %s failed (%s); retrying in %.1fs",
            item.attempts, item.id, err.message, delay,
        )  # fmt: skip

    def _breaker_opened(self, seedbox: str) -> None:
        breaker = self.breakers[seedbox]
        _LOGGER.error(
            "seedbox %s: %d consecutive failures; pausing its queue for %.0fs",
            seedbox, breaker.failures, breaker.cooldown,
        )  # fmt: skip
        notice = self.publisher.event_message(
            "breaker_open", seedbox=seedbox, failures=breaker.failures, until=breaker.open_until
        )
        self.store.enqueue([notice])
        self.publisher.outbox_pending()
        self.publisher.state_changed()

    def _stopped(self, item: Item, reason: str) -> None:
        item.rate = 0.0
        item.eta = None
        item.updated_at = time.time()
        if reason == "cancelled":
            self._cancelled(item)
            return
        # Paused or restarted mid-transfer: back in the queue, resuming from staging.
        item.state = ItemState.QUEUED
        item.attempts = max(0, item.attempts - 1)
        self._record(item, "paused" if item.paused or self.paused else "requeued")

    def _cancelled(self, item: Item) -> None:
        item.state = ItemState.CANCELLED
        item.finished_at = item.updated_at = time.time()
        discard_staging(self.config.routing.destinations[item.destination], item.id)
        self._record(item, "cancelled", event="cancelled")

    # --- commands (commands.Controller) --------------------------------------------

    def _on_command(self, payload: bytes) -> None:
        """Answer every command once on command/result: a bad request or bad arguments
        with their code and no traceback; anything unexpected (a bug) with `internal`,
        logged once at ERROR with its traceback. A store error stays fatal (_mqtt_loop)."""
        try:
            command = parse_command(payload)
        except RejectedEvent as err:
            self.publisher.result(command_result(None, error=(err.reason, err.detail)))
            return
        except Exception as err:
            _LOGGER.exception("reading a command failed")
            self.publisher.result(command_result(None, error=("internal", type(err).__name__)))
            return
        try:
            result = commands.execute(self, command.op, command.args)
            if inspect.isawaitable(result):  # e.g. rescan: answered when the seedboxes replied
                task = asyncio.ensure_future(self._answer_later(command.id, result))
                self._pending_answers.add(task)
                task.add_done_callback(self._pending_answers.discard)
                return
            answer = command_result(command.id, result=result)
        except commands.CommandError as err:
            answer = command_result(command.id, error=(err.code, err.message))
        except sqlite3.Error:
            raise  # not recorded, so not acknowledged
        except Exception as err:
            _LOGGER.exception("command %s (%s) failed", command.id, command.op)
            answer = command_result(command.id, error=("internal", type(err).__name__))
        self.publisher.result(answer)

    async def _answer_later(self, command_id: str, result: Awaitable[Any]) -> None:
        try:
            answer = command_result(command_id, result=await result)
        except commands.CommandError as err:
            answer = command_result(command_id, error=(err.code, err.message))
        except Exception as err:
            _LOGGER.exception("command %s failed", command_id)
            answer = command_result(command_id, error=("internal", f"{type(err).__name__}"))
        self.publisher.result(answer)

    def _item(self, item_id: str) -> Item:
        item = self.items.get(item_id)
        if item is None:
            raise commands.CommandError("not_found", f"no item {item_id}")
        return item

    def _interrupt(self, item_id: str, reason: str) -> bool:
        task = self._running.get(item_id)
        if task is None or task.done():
            return False
        self._stop_reason[item_id] = reason
        task.cancel()
        return True

    def retry(self, item_id: str | None) -> list[str]:
        if item_id is None:
            targets = [i for i in self.items.values() if i.state is ItemState.FAILED]
        else:
            item = self._item(item_id)
            if not can_retry(item):
                raise commands.CommandError(
                    "invalid_state", f"item {item_id} is {item.state.value}"
                )
            targets = [item]
        targets = [i for i in targets if self._configured(i)]
        if item_id is not None and not targets:
            raise commands.CommandError(
                "not_configured", f"item {item_id}: its seedbox or destination is not configured"
            )
        for item in targets:
            item.state = ItemState.QUEUED
            item.attempts = 0
            item.last_error = item.error_code = None
            item.next_attempt_at = item.finished_at = None
            item.updated_at = time.time()
            self._record(item, "retry", event="queued", retry=True)
        self._wakeup.set()
        return [i.id for i in targets]

    def _configured(self, item: Item) -> bool:
        return (
            item.seedbox in self.config.seedboxes
            and item.destination in self.config.routing.destinations
        )

    def _not_verifying(self, item: Item) -> None:
        # The verified payload is being moved into the library: that step is atomic.
        if item.state is ItemState.VERIFYING:
            raise commands.CommandError(
                "invalid_state", f"item {item.id} is verifying; it finishes in a moment"
            )

    def cancel(self, item_id: str) -> str:
        item = self._item(item_id)
        self._not_verifying(item)
        if not can_cancel(item):
            raise commands.CommandError("invalid_state", f"item {item_id} is {item.state.value}")
        if not self._interrupt(item_id, "cancelled"):
            self._cancelled(item)
        return item_id

    def pause(self, item_id: str | None) -> list[str]:
        if item_id is None:
            self.paused = True
            self.store.set_setting("paused", True)
            stopped = [
                i
                for i in list(self._running)
                if self.items[i].state is not ItemState.VERIFYING and self._interrupt(i, "requeue")
            ]
            self.publisher.state_changed()
            return stopped
        item = self._item(item_id)
        if item.state in FINISHED_STATES:
            raise commands.CommandError("invalid_state", f"item {item_id} is {item.state.value}")
        self._not_verifying(item)
        item.paused = True
        if not self._interrupt(item_id, "requeue"):
            item.updated_at = time.time()
            self._record(item, "paused")
        return [item_id]

    def resume(self, item_id: str | None) -> list[str]:
        if item_id is None:
            self.paused = False
            self.store.set_setting("paused", False)
            self.publisher.state_changed()
            self._wakeup.set()
            return []
        item = self._item(item_id)
        item.paused = False
        item.updated_at = time.time()
        self._record(item, "resumed")
        self._wakeup.set()
        return [item_id]

    def set_priority(self, item_id: str, priority: int) -> str:
        item = self._item(item_id)
        item.priority = priority
        item.updated_at = time.time()
        self._record(item, "priority", {"priority": priority})
        self._wakeup.set()
        return item_id

    def set_limits(self, bandwidth_limit: int | None, max_concurrent: int | None) -> dict[str, int]:
        if max_concurrent is not None:
            self.limits = Limits(max_concurrent, self.limits.per_seedbox)
            self.store.set_setting("max_concurrent", max_concurrent)
            self._wakeup.set()
        if bandwidth_limit is not None and bandwidth_limit != self.bandwidth.rate:
            self.bandwidth.set_rate(bandwidth_limit)
            self.store.set_setting("bandwidth_limit", bandwidth_limit)
            # A running lftp/rsync keeps the rate it started with: restart those (they
            # resume from the bytes on disk).
            for item_id in list(self._running):
                item = self.items[item_id]
                if self._engine_of(item) in TOOL_ENGINES and item.state is ItemState.TRANSFERRING:
                    self._interrupt(item_id, "requeue")
        self.publisher.state_changed()
        return {"bandwidth_limit": self.bandwidth.rate, "max_concurrent": self.limits.global_max}

    def get_queue(self, states: list[ItemState] | None) -> list[dict[str, Any]]:
        wanted = set(states) if states else None
        return [
            item_payload(i)
            for i in sorted(self.items.values(), key=lambda i: (-i.priority, i.received_at))
            if wanted is None or i.state in wanted
        ]

    # --- state ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        counts = Counter(i.state.value for i in self.items.values())
        per_seedbox: dict[str, dict[str, Any]] = {
            sb.id: {
                "name": sb.name,
                "breaker": "open" if self.breakers[sb.id].open_until else "closed",
                "breaker_until": self.breakers[sb.id].open_until,
                "consecutive_failures": self.breakers[sb.id].failures,
                "queued": 0,
                "active": 0,
                "waiting": 0,
                "failed": 0,
                "rate": 0.0,
                "node": self.monitor.status[sb.id].as_dict() if sb.id in self.nodes else None,
                "ssh": self.sessions[sb.id].link_status(),
                "lost_events": self.sequences.lost(sb.id),
            }
            for sb in self.config.seedboxes.values()
        }
        last_completed: Item | None = None
        for item in self.items.values():
            node = per_seedbox.get(item.seedbox)
            if node is not None:
                if item.state in ACTIVE_STATES:
                    node["active"] += 1
                    node["rate"] += item.rate
                elif item.state.value in ("queued", "waiting", "failed"):
                    node[item.state.value] += 1
            if item.state is ItemState.DONE and (
                last_completed is None
                or (item.finished_at or 0) > (last_completed.finished_at or 0)
            ):
                last_completed = item
        counters = self.store.counters()
        return {
            "v": 1,
            "bridge_id": self.config.bridge_id,
            "paused": self.paused,
            "counts": {state.value: counts.get(state.value, 0) for state in ItemState},
            "active": sum(counts.get(s.value, 0) for s in ACTIVE_STATES),
            "rate": round(sum(n["rate"] for n in per_seedbox.values()), 1),
            "totals": {
                "received": counters.get("received", 0),
                "completed": counters.get("completed", 0),
                "failed": counters.get("failed", 0),
                "rejected": counters.get("rejected", 0),
                "duplicates": counters.get("duplicates", 0),
                "bytes_transferred": counters.get("bytes_transferred", 0),
            },
            "limits": {
                "max_concurrent": self.limits.global_max,
                "bandwidth_limit": self.bandwidth.rate,
                "per_seedbox": dict(self.limits.per_seedbox),
            },
            "seedboxes": {k: {**v, "rate": round(v["rate"], 1)} for k, v in per_seedbox.items()},
            "destinations": {
                name: {
                    "free_space": self.free_space.get(name),
                    "min_free_space": self.config.transfers.min_free_space,
                }
                for name in self.config.routing.destinations
            },
            "last_completed": None
            if last_completed is None
            else {
                "id": last_completed.id,
                "name": last_completed.name,
                "at": last_completed.finished_at,
            },
            "updated_at": time.time(),
        }

    # --- housekeeping --------------------------------------------------------------

    def _prune(self) -> None:
        removed = self.store.prune(
            self.config.history_retention, removal=self.publisher.removal_message
        )
        for item_id in removed:
            self.items.pop(item_id, None)
            self.publisher.item_removed(item_id)
        self.sequences.prune(time.time())

    async def _watch_space(self) -> None:
        """Free space of each destination for the state, read off the event loop (a
        hung network mount must not stall the bridge)."""
        roots = self.config.routing.destinations
        while True:
            free = await asyncio.to_thread(lambda: {n: self._free(r) for n, r in roots.items()})
            if free != self.free_space:
                self.free_space = free
                self.publisher.state_changed()
            self._space_used.clear()
            with contextlib.suppress(TimeoutError):
                # a landed payload changes it at once; anything else, within SPACE_POLL
                await asyncio.wait_for(self._space_used.wait(), SPACE_POLL)

    def _free(self, root: Path) -> int | None:
        """Bytes free where a destination lives (None while it does not exist yet)."""
        try:
            return self.disk_free(root)
        except OSError:
            return None

    async def _pruner(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            self._prune()
