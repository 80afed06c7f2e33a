"""Configuration of the confluent-kafka clients (producer, consumer, admin)."""

from __future__ import annotations

import logging

from processor.config import Settings
from processor.security import confluent_settings

# librdkafka's own log lines go through Python logging under this name.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


def client_config(settings: Settings) -> dict:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.app_id}-client",
        "logger": LIBRDKAFKA_LOGGER,
        # librdkafka retries a refused connection every 100 ms by default and
        # logs each failure; back off instead.
        "reconnect.backoff.ms": 500,
        "reconnect.backoff.max.ms": 10000,
        **confluent_settings(settings.security),
    }


def producer_config(settings: Settings) -> dict:
    return {
        **client_config(settings),
        # The partitioner of Java clients and of faust: an execution's events
        # land on the partition that holds its table state. librdkafka's
        # default (consistent_random, CRC32) would put them elsewhere.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": settings.max_record_bytes,
    }


def reader_config(settings: Settings, group_id: str) -> dict:
    """Consumer settings for reading topics by assignment, without committing."""
    return {
        **client_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }
