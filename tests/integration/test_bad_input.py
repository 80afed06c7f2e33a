"""Bad input goes to the dead-letter topic while valid events around it are still folded."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from flyteidl.event import event_pb2
from google.protobuf import json_format

from support import read_topic, stream_files, wait_for_facts
from processor import expectations
from processor.kafka_clients import producer_config
from processor.routing import (
    DEAD_LETTER_OFFSET,
    DEAD_LETTER_PARTITION,
    DEAD_LETTER_REASON,
    DEAD_LETTER_TOPIC,
)
from processor.streamfile import read_stream

pytestmark = pytest.mark.integration


def _headers(message) -> dict[str, bytes]:
    return dict(message.headers() or [])


def test_bad_records_dead_lettered(module_settings, module_worker):
    topics = module_settings.topics
    producer = Producer(producer_config(module_settings))
    undecodable = b"\xff\xfe not a protobuf \x00"
    without_ids = event_pb2.WorkflowExecutionEvent(producer_id="propeller", phase=2).SerializeToString()
    marker = uuid.uuid4().hex.encode()

    beyond_year_9999 = event_pb2.WorkflowExecutionEvent(producer_id="propeller", phase=2)
    json_format.ParseDict({"project": "p", "domain": "d", "name": "n"}, beyond_year_9999.execution_id)
    beyond_year_9999.occurred_at.seconds = 253_402_300_800
    out_of_range = beyond_year_9999.SerializeToString()

    producer.produce(topics.node_events, key=b"some-key", value=undecodable, headers=[("trace", marker)])
    producer.produce(topics.workflow_events, key=None, value=without_ids, headers=[("trace", marker)])
    producer.produce(topics.workflow_events, key=b"p:d:n", value=out_of_range, headers=[("trace", marker)])
    assert producer.flush(30) == 0

    # Valid events sent after the bad ones must still be folded.
    stream = stream_files()[-1]
    for line in read_stream(str(stream)):
        producer.produce(
            topics.input_topic(line.event.kind),
            key=line.event.execution_key.encode(),
            value=line.event.message.SerializeToString(),
        )
    assert producer.flush(30) == 0

    failures = wait_for_facts(module_settings, expectations.load(stream.with_suffix(".expect.json")), module_worker)
    assert failures == []

    dead_letters = [
        message
        for message in read_topic(module_settings, topics.dead_letter, minimum=3)
        if _headers(message).get("trace") == marker
    ]
    by_reason = {_headers(message)[DEAD_LETTER_REASON]: message for message in dead_letters}

    assert set(by_reason) == {b"undecodable", b"missing-execution-id", b"invalid-timestamp"}
    assert by_reason[b"invalid-timestamp"].value() == out_of_range

    undecodable_letter = by_reason[b"undecodable"]
    assert undecodable_letter.value() == undecodable
    assert undecodable_letter.key() == b"some-key"
    assert _headers(undecodable_letter)[DEAD_LETTER_TOPIC] == topics.node_events.encode()
    assert _headers(undecodable_letter)[DEAD_LETTER_PARTITION].isdigit()
    assert _headers(undecodable_letter)[DEAD_LETTER_OFFSET].isdigit()

    missing_id_letter = by_reason[b"missing-execution-id"]
    assert missing_id_letter.value() == without_ids
    assert missing_id_letter.key() is None
    assert _headers(missing_id_letter)[DEAD_LETTER_TOPIC] == topics.workflow_events.encode()


def test_wrongly_keyed_events_repartitioned(module_settings, module_worker):
    """Events with random keys and librdkafka's default partitioner still fold on their execution's partition."""
    topics = module_settings.topics
    config = producer_config(module_settings)
    config["partitioner"] = "consistent_random"
    producer = Producer(config)

    stream = stream_files()[0]
    for number, line in enumerate(read_stream(str(stream))):
        key = None if number % 3 == 0 else uuid.uuid4().hex.encode()
        producer.produce(topics.input_topic(line.event.kind), key=key, value=line.event.message.SerializeToString())
    assert producer.flush(30) == 0

    failures = wait_for_facts(module_settings, expectations.load(stream.with_suffix(".expect.json")), module_worker)

    assert failures == []
