"""The worker's metrics endpoint in topologies.worker_metrics."""

import asyncio
import logging
import socket
import urllib.request
from types import SimpleNamespace

from faust.types import TP

from processor import metrics
from processor.config import Settings
from topologies.faust_fixes import stream_positions_of
from topologies.worker_metrics import WorkerGauges, start_metrics_server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_endpoint_serves_registry():
    settings = Settings(metrics_port=free_port(), metrics_address="127.0.0.1")

    server = start_metrics_server(settings)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert "flyte_state_events_consumed" in text
    assert "flyte_state_fold_seconds" in text
    assert "flyte_state_recovery_in_progress" in text


def test_port_zero_serves_nothing(caplog):
    caplog.set_level(logging.INFO)

    assert start_metrics_server(Settings(metrics_port=0)) is None
    assert "metrics endpoint is off" in caplog.text


def test_busy_port_logs_error(caplog):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        server = start_metrics_server(Settings(metrics_port=port, metrics_address="127.0.0.1"))

    assert server is None
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text


class LagConsumer:
    """A consumer that read one partition to its end, which is a transaction's commit marker."""

    def __init__(self, tp, highwater: int, position: int) -> None:
        self.tp = tp
        self.highwater_offset = highwater
        self.position_offset = position

    def assignment(self):
        return {self.tp}

    async def highwaters(self, *partitions):
        return {tp: self.highwater_offset for tp in partitions}

    async def position(self, tp):
        return self.position_offset


class LagApp:
    def __init__(self, consumer, committed: int) -> None:
        self.consumer = consumer
        self.monitor = SimpleNamespace(tp_committed_offsets={consumer.tp: committed})
        self.in_recovery = False

    def timer(self, *args, **kwargs):
        return lambda function: function


def lag_after_update(committed: int, expected: int, highwater: int, position: int) -> float:
    tp = TP("events", 0)
    consumer = LagConsumer(tp, highwater, position)
    stream_positions_of(consumer).sought(tp, expected)
    gauges = WorkerGauges(LagApp(consumer, committed), {}, ["events"])

    asyncio.run(gauges.update_lag())

    return metrics.CONSUMER_LAG.labels("events", "0")._value.get()


def test_lag_zero_when_only_marker_left():
    assert lag_after_update(committed=10, expected=10, highwater=11, position=11) == 0


def test_lag_counts_unread_records():
    assert lag_after_update(committed=10, expected=10, highwater=14, position=11) == 4


def test_lag_counts_unacknowledged_records():
    assert lag_after_update(committed=8, expected=10, highwater=11, position=11) == 3
