"""The composition root: builds the bridge's parts, runs them, supervises them, stops them.

The path of one completion (docs/architecture.md): mqtt.link → mqtt.router →
intake.Intake (committed to the store, then acknowledged) → lifecycle.Scheduler →
lifecycle.Runner → transfer.pipeline → lifecycle.Lifecycle (committed with its events
and labels) → mqtt.publisher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncssh

from .api.health import routes as health_routes
from .api.health import store_write_check
from .api.management import routes as management_routes
from .api.metrics import Metrics
from .api.metrics import routes as metrics_routes
from .api.server import ApiServer, qbittorrent_server
from .clients import make_client
from .clients.base import ClientError, ClientErrorKind
from .clients.monitor import ClientMonitor
from .clients.reconcile import Reconciler
from .clients.rtorrent_transport import SshLink
from .config.model import Config
from .datadir import DataDirLock
from .dispatch.dispatcher import Dispatcher
from .dispatch.tracker import RequestTracker
from .housekeeping import Housekeeping
from .intake.intake import Intake
from .lifecycle.controller import Controller
from .lifecycle.machine import Lifecycle
from .lifecycle.policy import Breaker, Limits
from .lifecycle.post import PostRunner
from .lifecycle.runner import Runner
from .lifecycle.scheduler import Scheduler
from .models import ACTIVE_STATES, FINISHED_STATES, ItemState
from .mqtt.commands import CommandDesk
from .mqtt.link import MqttLink
from .mqtt.listing import ItemPayloads
from .mqtt.noise import quiet_closed_sockets
from .mqtt.publisher import Publisher
from .mqtt.router import Router
from .mqtt.rule_commands import TrackerRuleDesk
from .mqtt.topics import Topics
from .persistence.cleanups import CleanupRecords
from .persistence.requests import DispatchRecords
from .persistence.store import Store
from .persistence.tracker_rules import load_tracker_rules
from .postprocess.cleanup import CleanupWatcher
from .postprocess.steps import post_steps
from .state import BridgeState, FinishedTally, SeedboxFacts, build_state, tally_finished
from .transfer.bandwidth import Bandwidth
from .transfer.engines.base import Engine
from .transfer.engines.lftp import LftpEngine
from .transfer.engines.process import kill_leftover_writers
from .transfer.engines.rsync import RsyncEngine
from .transfer.engines.sftp import SftpEngine
from .transfer.errors import ErrorCode, TransferError
from .transfer.landing import Modes, process_umask, staging_dir
from .transfer.pipeline import DiskFree, disk_usage_free
from .transfer.remote import SeedboxSession
from .transfer.torrents import TorrentSource

_LOGGER = logging.getLogger(__name__)


def client_ssh_link(session: SeedboxSession) -> SshLink:
    """The seedbox's SSH connection as its torrent client's adapter takes it (rTorrent's
    `scgi+ssh://`): a failure to connect is the client's, `auth` when retrying cannot
    help (a login or host key refused), else `unreachable`, retried like any other."""

    async def connection() -> asyncssh.SSHClientConnection:
        try:
            return await session.connection()
        except TransferError as err:
            login = err.code in (ErrorCode.AUTH_FAILED, ErrorCode.HOST_KEY_MISMATCH)
            kind = ClientErrorKind.AUTH if login else ClientErrorKind.UNREACHABLE
            raise ClientError(f"{err.code.value}: {err.message}", kind) from err

    return connection


class Bridge:
    def __init__(self, config: Config, *, disk_free: DiskFree = disk_usage_free) -> None:
        """disk_free: bytes free on the filesystem holding a path (injectable, so
        tests of the space checks do not depend on the machine's own disk)."""
        self.config = config
        self.topics = Topics(config.broker.topic_prefix, config.bridge_id)
        self.store = Store(config.data_dir / "q4d.sqlite3")
        # The stored tracker rules join the routing everything shares (rules.resolve).
        with self.store.transaction() as db:
            config.routing.tracker_rules.replace(load_tracker_rules(db))
        self.payloads = ItemPayloads(queue_paused=lambda: self.scheduler.paused)
        self.publisher = Publisher(
            topics=self.topics,
            store=self.store,
            bridge_name=config.bridge_name,
            seedbox_ids=list(config.seedboxes),
            classic_label_topic=(
                config.classic.label_topic
                if config.classic.enabled and config.classic.labels
                else None
            ),
            snapshot=lambda: self.state().as_dict(),
            items=lambda: self.lifecycle.items,
            payloads=self.payloads,
            requests=lambda: self.tracker.shown(),  # noqa: PLW0108 - the tracker comes later
        )
        self.lifecycle = Lifecycle(self.store, self.publisher)
        self._finished: tuple[int, FinishedTally] = (-1, tally_finished(()))
        transfers = config.transfers
        self.bandwidth = Bandwidth(
            self.store.get_setting("bandwidth_limit", transfers.bandwidth_limit)
        )
        self.scheduler = Scheduler(
            self.lifecycle,
            self.store,
            self.publisher,
            limits=Limits(
                global_max=self.store.get_setting("max_concurrent", transfers.max_concurrent),
                per_seedbox={sb.id: sb.max_concurrent for sb in config.seedboxes.values()},
            ),
            breakers={
                sb: Breaker(transfers.breaker_failures, transfers.breaker_cooldown)
                for sb in config.seedboxes
            },
        )
        self.sessions = {
            sb.id: SeedboxSession(sb, on_link_change=self.publisher.state_changed)
            for sb in config.seedboxes.values()
        }
        self.clients = {
            sb.id: make_client(sb.client, ssh=client_ssh_link(self.sessions[sb.id]))
            for sb in config.seedboxes.values()
            if sb.client
        }
        self.sftp = SftpEngine(transfers.sftp, self.bandwidth)
        engines: dict[str, Engine] = {
            "lftp": LftpEngine(
                transfers.lftp,
                config.data_dir / "scratch",
                bandwidth=self.bandwidth,
                slots=lambda: self.scheduler.limits.global_max,
                nice=transfers.nice,
            ),
            "sftp": self.sftp,
            "rsync": RsyncEngine(
                transfers.rsync,
                bandwidth=self.bandwidth,
                slots=lambda: self.scheduler.limits.global_max,
                nice=transfers.nice,
            ),
        }
        self.intake = Intake(
            config,
            self.topics,
            self.store,
            self.lifecycle,
            self.publisher,
            queued=self.scheduler.wake,
        )
        self.housekeeping = Housekeeping(
            self.store,
            self.lifecycle,
            self.publisher,
            self.intake.sequences,
            retention=config.history_retention,
            destinations=config.routing.destinations,
            disk_free=disk_free,
            state_changed=self.publisher.state_changed,
        )
        torrents = {
            sb.id: TorrentSource(sb, self.sessions[sb.id], self.clients.get(sb.id))
            for sb in config.seedboxes.values()
        }
        steps = post_steps(config, torrents=torrents, sessions=self.sessions, clients=self.clients)
        self.post = PostRunner(config, self.lifecycle, steps)
        self.cleanup = CleanupWatcher(CleanupRecords(self.store), self.clients.get)
        self.runner = Runner(
            config,
            self.lifecycle,
            self.scheduler,
            sessions=self.sessions,
            engines=engines,
            torrents=torrents,
            modes=Modes(transfers.file_mode, transfers.dir_mode).without(process_umask()),
            disk_free=disk_free,
            landed=self.housekeeping.space_used,
            post=self.post,
        )
        self.monitor = ClientMonitor(
            config.seedboxes, self.clients, on_change=self.publisher.state_changed
        )
        self.records = DispatchRecords(self.store)
        self.tracker = RequestTracker(
            self.records,
            self.monitor,
            self.publisher,
            interval=config.dispatch.watch_interval,
            retention=config.history_retention,
        )
        self.dispatcher = Dispatcher(
            config, self.clients, self.monitor, self.records, self.tracker, self.lifecycle.items
        )
        self.tracker.busy = self.dispatcher.busy
        self.lifecycle.observers.append(self.tracker.item_changed)
        self.reconciler = Reconciler(
            config, self.clients, self.monitor, self.lifecycle, self.intake
        )
        self.controller = Controller(
            config,
            self.lifecycle,
            self.scheduler,
            self.runner,
            self.bandwidth,
            self.post,
            self.payloads,
            state_changed=self.publisher.state_changed,
            rescan=self.reconciler.rescan,
            cleanup=self.cleanup,
        )
        self.commands = CommandDesk(
            self.controller,
            self.publisher.result,
            self.dispatcher,
            TrackerRuleDesk(self.store, config.routing),
        )
        # The HTTP API, only when asked for (it opens a port); metrics, health and the
        # management routes join it at the end (_mount_observability).
        self.api: ApiServer | None = None
        if config.api.enabled:
            self.api = qbittorrent_server(
                config,
                store=self.store,
                records=self.records,
                lifecycle=self.lifecycle,
                dispatcher=self.dispatcher,
                controller=self.controller,
            )
        subscriptions = [
            self.topics.completed_filter,
            self.topics.command,
            # retained: each (re)subscription reads every seedbox's last event number
            self.topics.sequence_filter,
        ]
        if config.classic.enabled:
            subscriptions.append(config.classic.down_topic)
        self.router = Router(
            self.topics,
            atomic=self.store.transaction,
            command=self.commands.handle,
            sequence=self.intake.on_sequence,
            completion=self.intake.on_completion,
        )
        self.link = MqttLink(
            config.broker,
            self.topics,
            self.publisher,
            subscriptions=subscriptions,
            handle=self.router.handle_batch,
            fatal=lambda: self.stop(failed=True),
        )
        self.connected = self.link.connected
        self.failed = False
        self._lock = DataDirLock(config.data_dir)
        self._stopping = asyncio.Event()
        if self.api is not None:
            self._mount_observability(self.api)

    def _mount_observability(self, api: ApiServer) -> None:
        """/metrics, /health, /ready and the management routes on the HTTP API; made last,
        since the metrics read every part once when they are registered."""
        metrics = Metrics(
            state=self.state,
            counters=self.store.counters,
            requests=self.records.counts,
            mqtt_connected=self.connected.is_set,
            seedboxes=self.config.seedboxes,
        )
        self.lifecycle.observers.append(metrics.item_changed)
        api.middlewares.append(metrics.middleware)
        api.add_routes(metrics_routes(metrics))
        api.add_routes(
            health_routes(
                mqtt_connected=self.connected.is_set,
                store_writable=store_write_check(self.store),
            )
        )
        api.add_routes(management_routes(self.dispatcher, admin_key=self.config.api.admin_key))

    def state(self) -> BridgeState:
        breakers = self.scheduler.breakers
        lifecycle = self.lifecycle
        if self._finished[0] != lifecycle.finished_changes:
            self._finished = (lifecycle.finished_changes, tally_finished(lifecycle.items.values()))
        return build_state(
            bridge_id=self.config.bridge_id,
            unfinished=lifecycle.unfinished.values(),
            finished=self._finished[1],
            paused=self.scheduler.paused,
            limits=self.scheduler.limits,
            bandwidth_limit=self.bandwidth.rate,
            counters=self.store.counters(),
            seedboxes={
                sb.id: SeedboxFacts(
                    name=sb.name,
                    breaker=breakers[sb.id],
                    client=self._client_state(sb.id) if sb.id in self.clients else None,
                    ssh=self.sessions[sb.id].link_status(),
                    lost_events=self.intake.sequences.lost(sb.id),
                )
                for sb in self.config.seedboxes.values()
            },
            free_space=self.housekeeping.free_space,
            destinations=self.config.routing.destinations,
            min_free_space=self.config.transfers.min_free_space,
            requests=self.tracker.counts(),
            last_rejections=self.store.last_rejections(),
            now=time.time(),
        )

    def _client_state(self, seedbox: str) -> dict[str, Any]:
        client = self.config.seedboxes[seedbox].client
        return {
            **self.monitor.status[seedbox].as_dict(),
            "dispatch": {
                "enabled": bool(client and client.dispatch.enabled),
                **self.dispatcher.score(seedbox).as_dict(),
            },
        }

    def recover(self) -> None:
        """Items caught mid-transfer by a crash or stop go back to the queue; their
        staging files stay, so the engine resumes from the bytes already on disk."""
        destinations = self.config.routing.destinations
        unfinished = [i for i in self.lifecycle.items.values() if i.state not in FINISHED_STATES]
        leftovers = kill_leftover_writers(
            staging_dir(destinations[i.destination], i.id)
            for i in unfinished
            if i.destination in destinations
        )
        if leftovers:
            _LOGGER.warning("stopped %d transfer process(es) left by the last run", len(leftovers))
        for item in unfinished:
            if not self.controller.configured(item):
                self.lifecycle.unconfigured(item)
            elif item.state in ACTIVE_STATES:
                self.lifecycle.recovered(item)
            elif item.state is ItemState.PROCESSING:
                self.post.launch(item)  # at the step it was in

    async def run(self) -> None:
        self._lock.acquire()  # DataDirBusy: another bridge runs on this data_dir
        try:
            await self._run()
        finally:
            self._lock.release()

    async def _run(self) -> None:
        quiet_closed_sockets(asyncio.get_running_loop())
        self.recover()
        self.housekeeping.prune()
        self.tracker.relink(self.lifecycle.items.values())
        self.tracker.prune()
        jobs = {
            "scheduler": self.scheduler.run(self.runner.launch),
            "flusher": self.publisher.run_flusher(),
            "outbox": self.publisher.run_outbox_sender(),
            "pruner": self.housekeeping.run_pruner(),
            "space": self.housekeeping.watch_space(),
            "sequences": self.intake.watch_sequences(self.reconciler.rescan),
        }
        if self.clients:
            jobs["clients"] = self.monitor.run(self.reconciler.reconcile)
            jobs["requests"] = self._follow_requests()
            jobs["cleanup"] = self.cleanup.run()  # torrents whose seeding goal is reached
        if self.api is not None:
            jobs["api"] = self.api.run()
        broker = (self.config.broker.host, self.config.broker.port)
        for sb_id, session in self.sessions.items():
            if session.seedbox.hook_flush or session.seedbox.broker_forward_port:
                jobs[f"ssh-{sb_id}"] = session.keep_connected(broker, self.connected)
        background = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        mqtt_task = asyncio.create_task(self.link.run(), name="mqtt")
        for task in [*background, mqtt_task]:
            task.add_done_callback(self._background_done)
        try:
            await self._stopping.wait()
        finally:
            _LOGGER.info(
                "stopping: %d transfer(s) will resume on the next start", len(self.runner.running)
            )
            for task in background:
                task.remove_done_callback(self._background_done)
                task.cancel()
            await self.runner.stop()
            await self.post.stop()
            await asyncio.gather(*background, return_exceptions=True)
            await self.publisher.detach(graceful=True)
            mqtt_task.remove_done_callback(self._background_done)
            mqtt_task.cancel()
            await asyncio.gather(mqtt_task, return_exceptions=True)
            for session in self.sessions.values():
                await session.close()
            await self.sftp.close()
            for client in self.clients.values():
                await client.close()
            self.store.close()

    async def _follow_requests(self) -> None:
        await self.dispatcher.recover()
        await self.tracker.run()

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
