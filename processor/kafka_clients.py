"""Configuration of the confluent-kafka clients (producer, consumer, admin)."""

from __future__ import annotations

import logging
import re
import time

from processor.config import Settings
from processor.security import confluent_settings

# librdkafka's own log lines go through Python logging under this name.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")


class RepeatFilter(logging.Filter):
    """Let one line of each kind through per ``interval_seconds``.

    librdkafka logs every failed reconnect, several per second per broker
    thread while a broker is down. Digits are ignored when comparing lines,
    because the lines differ only in counters and durations.
    """

    def __init__(self, interval_seconds: float = 30.0) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds
        self.last_seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # Debug lines appear only when FLYTE_STATE_LIBRDKAFKA_DEBUG is set,
        # and then each of them is kept.
        if record.levelno <= logging.DEBUG:
            return True
        shape = re.sub(r"\d+", "#", record.getMessage())
        now = time.monotonic()
        last = self.last_seen.get(shape)
        if last is not None and now - last < self.interval_seconds:
            return False
        self.last_seen[shape] = now
        return True


class DebugLinesAtInfo(logging.Filter):
    """Raise librdkafka's debug lines to INFO, so that handlers set to INFO keep them.

    faust's worker gives its log handler the worker's log level, which would
    drop every DEBUG record that FLYTE_STATE_LIBRDKAFKA_DEBUG requested.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


LIBRDKAFKA_LOGGER.addFilter(RepeatFilter())
# Added after RepeatFilter, which must still see the debug lines' own level.
_DEBUG_LINES_AT_INFO = DebugLinesAtInfo()


def client_config(settings: Settings) -> dict:
    config = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.app_id}-client",
        "logger": LIBRDKAFKA_LOGGER,
        # librdkafka retries a refused connection every 100 ms by default and
        # logs each failure; back off instead.
        "reconnect.backoff.ms": 500,
        "reconnect.backoff.max.ms": 10000,
        **confluent_settings(settings.security),
    }
    if settings.librdkafka_debug:
        config["debug"] = settings.librdkafka_debug
        # librdkafka's debug lines arrive at Python's DEBUG level, which the
        # usual INFO level would drop.
        LIBRDKAFKA_LOGGER.setLevel(logging.DEBUG)
        LIBRDKAFKA_LOGGER.addFilter(_DEBUG_LINES_AT_INFO)
    return config


def producer_config(settings: Settings) -> dict:
    return {
        **client_config(settings),
        # The partitioner of Java clients and of faust: an execution's events
        # land on the partition that stores its table state. librdkafka's
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
