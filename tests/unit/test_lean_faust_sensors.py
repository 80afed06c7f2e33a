"""The worker's lighter faust pieces: the raw input schema, the lean monitor and the batched counters."""

from __future__ import annotations

import asyncio
import time

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message
from prometheus_client import CollectorRegistry, Counter

from processor.config import Settings
from processor.metrics import PendingCounts, counter_value
from topologies.lean_monitor import LeanMonitor
from topologies.raw_input import RawInputSchema

MESSAGES = [
    Message("flyte.events.task", 3, 41, 1.0, 0, [("kind", b"task")], b"p:d:name", b"\x0a\x01x", None),
    Message("flyte.events.task", 0, 0, 1.0, 0, [], None, b"value", None),
    Message("flyte.events.node", 1, 7, 1.0, 0, None, b"key", None, None),
    Message("flyte.events.node", 1, 8, 1.0, 0, [("a", b""), ("a", b"2")], b"", b"", None),
]


@pytest.fixture
def app():
    return faust.App("test-raw-input", broker="kafka://127.0.0.1:9", web_enabled=False)


@pytest.mark.parametrize("message", MESSAGES, ids=["full", "no-key", "no-value", "empty"])
def test_raw_schema_matches_faust_raw_codec(app, message):
    raw_decode = RawInputSchema().compile(app)
    faust_decode = faust.Schema(key_serializer="raw", value_serializer="raw").compile(app)

    event = asyncio.run(raw_decode(message))
    expected = asyncio.run(faust_decode(message, propagate=True))

    assert event.key == expected.key
    assert event.value == expected.value
    assert event.headers == expected.headers
    assert event.message is message
    assert event.app is app


def test_raw_schema_passes_undecodable_bytes(app):
    message = Message("flyte.events.task", 0, 1, 1.0, 0, [], b"\xff\xfe", b"\x80not protobuf", None)

    event = asyncio.run(RawInputSchema().compile(app)(message, propagate=True))

    assert event.key == b"\xff\xfe"
    assert event.value == b"\x80not protobuf"


def test_worker_input_topic_uses_raw_schema(tmp_path):
    from topologies.execution_state import build_topology

    settings = Settings.from_env().replace(state_dir=tmp_path)
    topology = build_topology(settings)

    assert isinstance(topology.input_topic.schema, RawInputSchema)
    assert isinstance(topology.app.monitor, LeanMonitor)


def test_lean_monitor_keeps_inbound_time_and_commits():
    monitor = LeanMonitor()
    tp = TP("flyte.events.task", 2)
    message = MESSAGES[0]

    before = time.monotonic()
    monitor.on_message_in(tp, 41, message)
    state = monitor.on_stream_event_in(tp, 41, object(), object())
    monitor.on_stream_event_out(tp, 41, object(), object(), state)
    monitor.on_message_out(tp, 41, message)
    monitor.on_tp_commit({tp: 42})
    monitor.track_tp_end_offset(tp, 50)

    assert state is None
    assert monitor.stream_inbound_time[tp] >= before
    assert monitor.tp_committed_offsets == {tp: 42}
    assert monitor.tp_end_offsets == {tp: 50}
    assert monitor.messages_received_total == 0
    assert monitor.events_total == 0


def test_pending_counts_reach_counter_on_flush():
    counter = Counter("test_pending_events", "events", ["kind", "outcome"], registry=CollectorRegistry())
    counts = PendingCounts(counter)

    counts.add("task", "applied")
    counts.add("task", "applied")
    counts.add("node", "duplicate")

    assert counter_value(counter, kind="task", outcome="applied") == 0
    counts.flush()
    assert counter_value(counter, kind="task", outcome="applied") == 2
    assert counter_value(counter, kind="node", outcome="duplicate") == 1

    counts.flush()
    assert counter_value(counter, kind="task", outcome="applied") == 2
    assert counts.pending == {}
