"""Routing decisions of processor.routing and its murmur2 partitioner."""

import pytest
from aiokafka.partitioner import murmur2

from processor.config import Settings
from processor.events import DeadLetterReason, EventKind
from processor.routing import (
    DEAD_LETTER_DETAIL,
    DEAD_LETTER_OFFSET,
    DEAD_LETTER_PARTITION,
    DEAD_LETTER_REASON,
    DEAD_LETTER_TOPIC,
    KIND_HEADER,
    DeadLetter,
    FoldHere,
    InputRecord,
    RecordRouter,
    Repartition,
    dead_letter_headers,
    header_value,
    partition_for_key,
)

from .builders import EXECUTION_KEY, NodePhase, TaskPhase, WorkflowPhase, node_event, task_event, workflow_event

SETTINGS = Settings()
KEY = EXECUTION_KEY.encode()


def java_murmur2(data: bytes) -> int:
    """Return org.apache.kafka.common.utils.Utils.murmur2(data) as a signed 32-bit int.

    Written from the Java algorithm (seed 0x9747b28c, m 0x5bd1e995, r 24) as an
    independent reference for the partitioner under test.
    """
    mask = 0xFFFFFFFF
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & mask

    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k

    tail = data[length & ~3 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & mask

    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """Return the partition of Kafka's default partitioner: toPositive(murmur2(key)) % partitions."""
    return (java_murmur2(key) & 0x7FFFFFFF) % partitions


def topic_of(kind: EventKind) -> str:
    return SETTINGS.topics.input_topic(kind)


def record(value, *, topic=None, key=KEY, partition=None, headers=(), offset=7):
    if partition is None:
        partition = partition_for_key(KEY, SETTINGS.partitions)
    return InputRecord(
        topic=topic or topic_of(EventKind.WORKFLOW),
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=headers,
    )


def wrong_partition() -> int:
    return (partition_for_key(KEY, SETTINGS.partitions) + 1) % SETTINGS.partitions


WORKFLOW_VALUE = workflow_event(WorkflowPhase.RUNNING, 1).SerializeToString()

EVENT_VALUES = {
    EventKind.WORKFLOW: WORKFLOW_VALUE,
    EventKind.NODE: node_event("n0", NodePhase.RUNNING, 1).SerializeToString(),
    EventKind.TASK: task_event("n0", TaskPhase.RUNNING, 1).SerializeToString(),
}


def test_java_murmur2_known_vector():
    """The Java client's Utils.murmur2("21".getBytes()) is -973932308, as aiokafka's port also gives."""
    assert java_murmur2(b"21") == -973932308


def test_aiokafka_murmur2_known_vector():
    assert murmur2(b"21") & 0xFFFFFFFF == -973932308 & 0xFFFFFFFF


@pytest.mark.parametrize(
    "key",
    [b"", b"a", b"ab", b"abc", b"abcd", b"21", b"foobar", EXECUTION_KEY.encode(), b"acme/p:d:n", bytes(range(256))],
)
@pytest.mark.parametrize("partitions", [1, 3, 6, 12, 100])
def test_partition_for_key_matches_java(key, partitions):
    assert partition_for_key(key, partitions) == java_partition(key, partitions)


def test_partition_for_key_high_bit():
    """A key whose hash is negative as a Java int must still give a non-negative partition."""
    assert java_murmur2(b"21") < 0
    assert partition_for_key(b"21", 6) == (-973932308 & 0x7FFFFFFF) % 6


@pytest.mark.parametrize("kind", list(EventKind))
def test_route_right_key_fold_here(kind):
    route = RecordRouter(SETTINGS).route(record(EVENT_VALUES[kind], topic=topic_of(kind)))

    assert isinstance(route, FoldHere)
    assert route.event.kind is kind
    assert route.event.execution_key == EXECUTION_KEY


@pytest.mark.parametrize(
    "key, partition",
    [(b"flytesnacks:development:other", None), (None, None), (KEY, "wrong")],
    ids=["wrong-key", "no-key", "wrong-partition"],
)
@pytest.mark.parametrize("kind", list(EventKind))
def test_route_repartition(kind, key, partition):
    chosen = wrong_partition() if partition == "wrong" else None
    route = RecordRouter(SETTINGS).route(record(EVENT_VALUES[kind], topic=topic_of(kind), key=key, partition=chosen))

    assert isinstance(route, Repartition)
    assert route.key == KEY
    assert header_value(route.headers, KIND_HEADER) == kind.value.encode()


def test_repartition_keeps_other_headers():
    headers = [("trace-id", b"abc"), ("source", b"propeller")]

    route = RecordRouter(SETTINGS).route(record(WORKFLOW_VALUE, key=None, headers=headers))

    assert list(route.headers[:2]) == headers


def test_repartition_replaces_kind_header():
    headers = [(KIND_HEADER, b"task"), ("trace-id", b"abc")]
    node_topic = topic_of(EventKind.NODE)
    node_record = record(EVENT_VALUES[EventKind.NODE], topic=node_topic, key=None, headers=headers)

    route = RecordRouter(SETTINGS).route(node_record)

    kind_values = [value for name, value in route.headers if name == KIND_HEADER]
    assert kind_values == [b"node"]
    assert header_value(route.headers, "trace-id") == b"abc"


@pytest.mark.parametrize("kind", list(EventKind))
def test_route_repartition_topic_with_header(kind):
    headers = [(KIND_HEADER, kind.value.encode())]

    route = RecordRouter(SETTINGS).route(record(EVENT_VALUES[kind], topic=SETTINGS.repartition_topic, headers=headers))

    assert isinstance(route, FoldHere)
    assert route.event.kind is kind


def test_route_repartition_topic_without_header():
    route = RecordRouter(SETTINGS).route(record(WORKFLOW_VALUE, topic=SETTINGS.repartition_topic))

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.UNKNOWN_KIND


def test_route_repartition_topic_unknown_kind():
    headers = [(KIND_HEADER, b"launch_plan")]

    route = RecordRouter(SETTINGS).route(record(WORKFLOW_VALUE, topic=SETTINGS.repartition_topic, headers=headers))

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.UNKNOWN_KIND


def test_route_repartition_topic_wrong_partition():
    """A record on the wrong partition of the repartition topic is dead-lettered, not repartitioned again."""
    headers = [(KIND_HEADER, b"workflow")]
    repartition_record = record(
        WORKFLOW_VALUE, topic=SETTINGS.repartition_topic, headers=headers, partition=wrong_partition()
    )

    route = RecordRouter(SETTINGS).route(repartition_record)

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.WRONG_PARTITION


def test_route_unknown_topic_without_header():
    route = RecordRouter(SETTINGS).route(record(WORKFLOW_VALUE, topic="some.other.topic"))

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.UNKNOWN_KIND


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, DeadLetterReason.UNDECODABLE),
        (b"\xff\xff\xff", DeadLetterReason.UNDECODABLE),
        (b"", DeadLetterReason.MISSING_EXECUTION_ID),
        (b"\x00" * (SETTINGS.max_event_bytes + 1), DeadLetterReason.OVERSIZED),
    ],
    ids=["none", "garbage", "empty", "oversized"],
)
def test_route_dead_letter(value, reason):
    route = RecordRouter(SETTINGS).route(record(value))

    assert isinstance(route, DeadLetter)
    assert route.reason is reason


def test_route_uses_settings_partitions():
    settings = Settings(partitions=12)
    partition = partition_for_key(KEY, 12)

    route = RecordRouter(settings).route(record(WORKFLOW_VALUE, partition=partition))

    assert isinstance(route, FoldHere)


def test_dead_letter_headers():
    original = [("trace-id", b"abc"), (KIND_HEADER, b"node")]
    source = record(b"\xff", topic="flyte.events.node", partition=3, offset=42, headers=original)

    headers = dead_letter_headers(source, DeadLetterReason.UNDECODABLE, "value is not a binary event")

    assert headers[:2] == original
    assert header_value(headers, DEAD_LETTER_REASON) == b"undecodable"
    assert header_value(headers, DEAD_LETTER_DETAIL) == b"value is not a binary event"
    assert header_value(headers, DEAD_LETTER_TOPIC) == b"flyte.events.node"
    assert header_value(headers, DEAD_LETTER_PARTITION) == b"3"
    assert header_value(headers, DEAD_LETTER_OFFSET) == b"42"
    assert len(headers) == len(original) + 5


def test_dead_letter_headers_non_ascii_detail():
    source = record(b"\xff")

    headers = dead_letter_headers(source, DeadLetterReason.INVALID_ID, "invalid name 'ä\udcff'")

    assert header_value(headers, DEAD_LETTER_DETAIL).startswith("invalid name 'ä".encode())


def test_header_value_first_match():
    assert header_value([("a", b"1"), ("a", b"2")], "a") == b"1"


def test_header_value_missing():
    assert header_value([("a", b"1")], "b") is None


def test_route_dead_letters_unexpected_decoding_error(monkeypatch):
    def failing_decode(kind, value, *, max_bytes):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("processor.routing.decode_event", failing_decode)

    route = RecordRouter(SETTINGS).route(record(WORKFLOW_VALUE))

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.UNDECODABLE
    assert "RecursionError" in route.detail
