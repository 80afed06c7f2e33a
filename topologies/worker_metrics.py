"""The worker's Prometheus endpoint and the gauges that read faust's consumer and tables."""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Optional
from wsgiref.simple_server import WSGIServer

import faust
from prometheus_client import start_http_server

from processor import metrics
from processor.config import Settings
from topologies.faust_fixes import stream_positions_of

log = logging.getLogger(__name__)

# Seconds between two updates of the consumer lag gauges. Each update sends
# one ListOffsets request for the worker's assigned partitions.
LAG_INTERVAL_SECONDS = 5.0

# Seconds between two updates of the table size gauges. Counting the keys of
# a RocksDB table walks all of them on the event loop, so this runs less often.
TABLE_SIZE_INTERVAL_SECONDS = 15.0


def start_metrics_server(settings: Settings) -> Optional[WSGIServer]:
    """Serve metrics.REGISTRY on FLYTE_STATE_METRICS_PORT in a daemon thread, unless the port is 0.

    Returns the server, or None when it is off or could not start. A port
    that cannot be bound is logged as an error and the worker runs on
    without the endpoint, because folding matters more than its metrics.
    """
    if settings.metrics_port == 0:
        log.info("metrics endpoint is off (FLYTE_STATE_METRICS_PORT=0)")
        return None
    try:
        server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=metrics.REGISTRY)
    except OSError as error:
        log.error(
            "cannot serve metrics on %s:%d: %s; the worker runs without its metrics endpoint, "
            "set FLYTE_STATE_METRICS_PORT to a free port",
            settings.metrics_address,
            settings.metrics_port,
            error,
        )
        return None
    log.info("serving Prometheus metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port)
    return server


class WorkerGauges:
    """Timers of a faust app that update the consumer lag and table size gauges, and the recovery gauge."""

    def __init__(self, app: faust.App, tables: Mapping[str, faust.Table], consumed_topics: Iterable[str]) -> None:
        self.app = app
        self.tables = tables
        self.consumed_topics = frozenset(consumed_topics)
        self.lag_labels: set[tuple[str, str]] = set()

        app.timer(LAG_INTERVAL_SECONDS, on_leader=False)(self.update_lag)
        app.timer(TABLE_SIZE_INTERVAL_SECONDS, on_leader=False)(self.update_table_sizes)
        # Count right after recovery too, when the tables change the most. One
        # table's hook is enough because faust recovers all tables together.
        first_table = next(iter(tables.values()), None)
        if first_table is not None:
            first_table.on_recover(self.update_table_sizes)
        # Read at scrape time: faust sets in_recovery while the tables restore.
        metrics.RECOVERY_IN_PROGRESS.set_function(lambda: 1.0 if app.in_recovery else 0.0)

    async def update_lag(self) -> None:
        """Set the lag of each assigned partition of the consumed topics; drop partitions no longer assigned."""
        consumer = self.app.consumer
        partitions = sorted(tp for tp in consumer.assignment() if tp.topic in self.consumed_topics)
        labels: set[tuple[str, str]] = set()
        if partitions:
            try:
                highwaters = await consumer.highwaters(*partitions)
            except Exception as error:  # aiokafka can raise several error types during a rebalance.
                log.debug("cannot read high watermarks for the lag gauges: %r", error)
                return

            # The monitor records the offsets this process committed. Before
            # its first commit of a partition, the consumer's position is used
            # instead, which right after assignment is the group's committed offset.
            committed_offsets = self.app.monitor.tp_committed_offsets
            for tp in partitions:
                highwater = highwaters.get(tp)
                if highwater is None:
                    continue
                committed = committed_offsets.get(tp)
                if committed is None:
                    try:
                        committed = await consumer.position(tp)
                    except Exception as error:
                        # A rebalance can revoke the partition after the
                        # assignment was read, and an exception from a faust
                        # timer stops the whole worker.
                        log.debug(
                            "cannot read the position of %s[%d] for its lag gauge: %r", tp.topic, tp.partition, error
                        )
                        continue
                if committed is None:
                    continue
                lag = max(0, highwater - committed)
                if lag and await self._only_markers_left(tp, committed, highwater):
                    lag = 0
                label = (tp.topic, str(tp.partition))
                metrics.CONSUMER_LAG.labels(*label).set(lag)
                labels.add(label)

        for label in self.lag_labels - labels:
            metrics.CONSUMER_LAG.remove(*label)
        self.lag_labels = labels

    async def _only_markers_left(self, tp, committed: int, highwater: int) -> bool:
        """Return whether the offsets from ``committed`` up to ``highwater`` contain no record, only transaction markers.

        The end of a partition whose last offset is a commit marker stays one
        offset past the committed offset until another record arrives. Such a
        partition has no lag when the worker committed every record it
        received and the consumer's position, which moves past markers, has
        reached the end.
        """
        expected = stream_positions_of(self.app.consumer).expected.get(tp)
        if expected is None or committed < expected:
            return False
        try:
            position = await self.app.consumer.position(tp)
        except Exception as error:  # revoked by a rebalance meanwhile
            log.debug("cannot read the position of %s[%d] for its lag gauge: %r", tp.topic, tp.partition, error)
            return False
        return position is not None and position >= highwater

    async def update_table_sizes(self) -> None:
        for name, table in self.tables.items():
            try:
                size = len(table)
            except Exception as error:
                # Like update_lag: a rebalance can close a table's partitions
                # under the count, and a faust timer must not raise.
                log.debug("cannot count the keys of table %s: %r", name, error)
                continue
            metrics.TABLE_KEYS.labels(table=name).set(size)
