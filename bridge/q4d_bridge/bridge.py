"""The composition root: builds the bridge's parts, runs them, supervises them, stops them.

The path of one completion (docs/architecture.md): mqtt.link → mqtt.router →
intake.Intake (committed to the store, then acknowledged) → lifecycle.Scheduler →
lifecycle.Runner → transfer.pipeline → lifecycle.Lifecycle (committed with its events
and labels) → mqtt.publisher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine
from typing import Any

from .api.health import routes as health_routes
from .api.health import store_write_check
from .api.management import routes as management_routes
from .api.metrics import Metrics
from .api.metrics import routes as metrics_routes
from .api.server import ApiServer, qbittorrent_server
from .clients.monitor import ClientMonitor
from .clients.reconcile import Reconciler
from .config.model import ArrConfig, Config, DispatchConfig, HomeClientConfig
from .config.source import ConfigSource
from .datadir import DataDirLock
from .dispatch.dispatcher import Dispatcher
from .dispatch.tracker import RequestTracker
from .housekeeping import Housekeeping
from .intake.intake import Intake
from .lifecycle.controller import Controller
from .lifecycle.machine import Lifecycle
from .lifecycle.policy import Limits
from .lifecycle.post import PostRunner
from .lifecycle.runner import Runner
from .lifecycle.scheduler import Scheduler
from .live import LiveConfig, client_jobs, link_job
from .models import ACTIVE_STATES, FINISHED_STATES, ItemState
from .mqtt.codec import dumps
from .mqtt.commands import CommandDesk
from .mqtt.config_commands import ConfigDesk
from .mqtt.link import MqttLink
from .mqtt.listing import ItemPayloads
from .mqtt.noise import quiet_closed_sockets
from .mqtt.probe_commands import ProbeDesk
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
from .seedbox_parts import SeedboxRegistry
from .state import BridgeState, FinishedTally, SeedboxFacts, build_state, tally_finished
from .transfer.bandwidth import Bandwidth
from .transfer.engines.base import Engine
from .transfer.engines.lftp import LftpEngine
from .transfer.engines.process import kill_leftover_writers
from .transfer.engines.rsync import RsyncEngine
from .transfer.engines.sftp import SftpEngine
from .transfer.landing import Modes, process_umask, staging_dir
from .transfer.pipeline import DiskFree, disk_usage_free

_LOGGER = logging.getLogger(__name__)


class Bridge:
    def __init__(
        self,
        config: Config,
        *,
        disk_free: DiskFree = disk_usage_free,
        source: ConfigSource | None = None,
    ) -> None:
        """disk_free: bytes free on the filesystem holding a path (injectable, so
        tests of the space checks do not depend on the machine's own disk). source:
        where config came from (ConfigSource.load); with it, Home Assistant's
        configuration commands can change the runtime layer."""
        # The bridge's own mappings of seedboxes, arr instances and home clients: live.py
        # changes them (and the routing) in place while it runs, and every part holds
        # this config.
        live_seedboxes = dict(config.seedboxes)
        self.arr: dict[str, ArrConfig] = dict(config.arr)
        self.home_clients: dict[str, HomeClientConfig] = dict(config.home_clients)
        self.config = config = dataclasses.replace(
            config, seedboxes=live_seedboxes, arr=self.arr, home_clients=self.home_clients
        )
        self.topics = Topics(config.broker.topic_prefix, config.bridge_id)
        self.store = Store(config.data_dir / "q4d.sqlite3")
        # The stored tracker rules join the routing everything shares (rules.resolve).
        with self.store.transaction() as db:
            config.routing.tracker_rules.replace(load_tracker_rules(db))
        self.payloads = ItemPayloads(queue_paused=lambda: self.scheduler.paused)
        self.seedboxes = SeedboxRegistry(
            live_seedboxes,
            config.transfers,
            on_link_change=lambda: self.publisher.state_changed(),  # noqa: PLW0108 - comes later
        )
        self.publisher = Publisher(
            topics=self.topics,
            store=self.store,
            bridge_name=config.bridge_name,
            seedbox_ids=self.seedboxes.ids,
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
                per_seedbox=self.seedboxes.limits,
            ),
            breakers=self.seedboxes.breakers,
        )
        self.sessions = self.seedboxes.sessions
        self.clients = self.seedboxes.clients
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
            destinations=lambda: config.routing.destinations,
            disk_free=disk_free,
            state_changed=self.publisher.state_changed,
        )
        torrents = self.seedboxes.torrents
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
        self.tracker_rules = TrackerRuleDesk(self.store, config.routing)
        self.config_desk: ConfigDesk | None = None
        if source is not None:
            self.config_desk = ConfigDesk(
                self.store,
                source,
                apply=self.apply,
                current=lambda: self.config,
                unfinished=self.lifecycle.unfinished.values,
                publish=lambda body: self.publisher.retained(self.topics.config, dumps(body)),
                vet=lambda new, confirm: self.live.vet(new, confirm=confirm),
            )
            self.publisher.retained(self.topics.config, dumps(self.config_desk.body()))
        self.commands = CommandDesk(
            self.controller,
            self.publisher.result,
            self.dispatcher,
            self.tracker_rules,
            self.config_desk,
            ProbeDesk(lambda: self.config),
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
        self.live = LiveConfig(self)
        self._jobs: dict[str, asyncio.Task[None]] | None = None  # while it runs
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

    def adopt_dispatch(self, settings: DispatchConfig) -> None:
        """New dispatch settings (live.py): the next decision and the tracker's next
        look use them; `config` shows them (it shares every live mapping)."""
        self.config = dataclasses.replace(self.config, dispatch=settings)
        self.dispatcher.settings = settings
        self.tracker.interval = settings.watch_interval

    async def apply(self, new: Config, *, confirm: bool) -> dict[str, Any]:
        """Adopt a new configuration while running: what changed, live (live.py)."""
        return await self.live.apply(new, confirm=confirm)

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
            jobs.update(client_jobs(self))
        if self.api is not None:
            jobs["api"] = self.api.run()
        for sb_id, session in self.sessions.items():
            if (job := link_job(self, session)) is not None:
                jobs[f"ssh-{sb_id}"] = job
        self._jobs = {}
        for name, job in jobs.items():
            self.start_job(name, job)
        mqtt_task = asyncio.create_task(self.link.run(), name="mqtt")
        mqtt_task.add_done_callback(self._background_done)
        try:
            await self._stopping.wait()
        finally:
            _LOGGER.info(
                "stopping: %d transfer(s) will resume on the next start", len(self.runner.running)
            )
            background, self._jobs = list(self._jobs.values()), None
            for task in background:
                task.remove_done_callback(self._background_done)
                task.cancel()
            await self.runner.stop()
            await self.post.stop()
            await asyncio.gather(*background, return_exceptions=True)
            await self.live.close()  # parts a change replaced, once their attempts ended
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

    def start_job(self, name: str, job: Coroutine[Any, Any, None]) -> None:
        """A loop that runs as long as the bridge: at start, or when a change applied
        live brings one (a seedbox's SSH link); none once it stops."""
        if self._jobs is None:
            job.close()
            return
        task = asyncio.create_task(job, name=name)
        task.add_done_callback(self._background_done)
        self._jobs[name] = task

    def end_job(self, name: str) -> asyncio.Task[None] | None:
        """Cancel a loop started with start_job (returned, to wait for its end)."""
        task = self._jobs.pop(name, None) if self._jobs is not None else None
        if task is not None:
            task.remove_done_callback(self._background_done)
            task.cancel()
        return task

    def has_job(self, name: str) -> bool:
        return self._jobs is not None and name in self._jobs

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

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
