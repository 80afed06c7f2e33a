"""A replaced state producer delivers the records that its caller produces again, on the real broker."""

from __future__ import annotations

import asyncio

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from processor.kafka_clients import reader_config
from tests.integration.support import create_topic, isolated_settings
from topologies.state_producer import Delivery, StateRecordProducer


def _read_all(settings, topic: str) -> list[tuple[bytes, bytes]]:
    consumer = Consumer({**reader_config(settings, f"{settings.app_id}-reader"), "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    records = []
    try:
        while True:
            message = consumer.poll(10.0)
            assert message is not None, f"no end of partition of {topic} within 10 s"
            if message.error() is not None:
                break
            records.append((message.key(), message.value()))
    finally:
        consumer.close()
    return records


def test_replaced_producer_delivers_records_again(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    topic = f"{settings.app_id}.replacement"
    create_topic(settings, topic, {"cleanup.policy": "compact"}, partitions=1)
    producer = StateRecordProducer(settings)

    first = Delivery()
    producer.send(topic, b"p:d:a", b"version 1", first, partition=0)
    producer.send(topic, b"p:d:b", b"version 1", first, partition=0)
    first.superseded = True
    producer.replace("test")
    again = Delivery()
    producer.send(topic, b"p:d:a", b"version 1", again, partition=0)
    producer.send(topic, b"p:d:b", b"version 1", again, partition=0)
    asyncio.run(producer.confirm(again))

    assert again.pending == 0
    assert again.failures == []
    records = _read_all(settings, topic)
    # The purge can come after the first records reached the broker, so the
    # topic can contain them twice. The last copy of each key is the new producer's.
    assert records[-2:] == [(b"p:d:a", b"version 1"), (b"p:d:b", b"version 1")]
    assert len(records) in (2, 4)
