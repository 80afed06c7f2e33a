"""FLYTE_STATE_LIBRDKAFKA_DEBUG: librdkafka's debug log for diagnosing the worker's Kafka clients."""

import logging
import os

import pytest

from processor.config import ConfigError, Settings
from processor.kafka_clients import LIBRDKAFKA_LOGGER, DebugLinesAtInfo, RepeatFilter, client_config, producer_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("FLYTE_STATE_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


@pytest.fixture
def librdkafka_logger_level():
    """Restore the librdkafka logger's level and filters, which a debug setting changes for the whole process."""
    level = LIBRDKAFKA_LOGGER.level
    filters = list(LIBRDKAFKA_LOGGER.filters)
    yield
    LIBRDKAFKA_LOGGER.setLevel(level)
    LIBRDKAFKA_LOGGER.filters[:] = filters


def test_debug_is_off_by_default():
    settings = Settings.from_env()

    assert settings.librdkafka_debug == ""
    assert "debug" not in client_config(settings)


def test_debug_contexts_reach_every_client(monkeypatch, librdkafka_logger_level):
    monkeypatch.setenv("FLYTE_STATE_LIBRDKAFKA_DEBUG", " eos,broker ")

    settings = Settings.from_env()
    settings.validate()

    assert settings.librdkafka_debug == "eos,broker"
    assert client_config(settings)["debug"] == "eos,broker"
    assert producer_config(settings)["debug"] == "eos,broker"
    assert LIBRDKAFKA_LOGGER.getEffectiveLevel() == logging.DEBUG


def test_debug_setting_survives_the_worker_environment(monkeypatch):
    settings = Settings(librdkafka_debug="eos")

    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)

    assert Settings.from_env().librdkafka_debug == "eos"


def test_unknown_debug_context_is_a_config_error():
    settings = Settings(librdkafka_debug="eos,brokers")

    with pytest.raises(ConfigError, match="unknown librdkafka debug contexts brokers"):
        settings.validate()


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("librdkafka", level, __file__, 1, message, None, None)


def test_repeat_filter_passes_every_debug_line():
    repeat_filter = RepeatFilter(interval_seconds=60.0)

    assert repeat_filter.filter(_record(logging.DEBUG, "PRODUCE: partition 3 sent 12 messages"))
    assert repeat_filter.filter(_record(logging.DEBUG, "PRODUCE: partition 3 sent 14 messages"))


def test_repeat_filter_still_drops_repeated_errors():
    repeat_filter = RepeatFilter(interval_seconds=60.0)

    assert repeat_filter.filter(_record(logging.ERROR, "FAIL: 127.0.0.1:9092/1: Connect to 127.0.0.1:9092 failed"))
    assert not repeat_filter.filter(_record(logging.ERROR, "FAIL: 127.0.0.1:9092/1: Connect to 127.0.0.1:9093 failed"))


def test_debug_lines_reach_a_handler_at_info(librdkafka_logger_level):
    # faust's worker sets its log handler to the worker's level, INFO by default.
    records = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append
    LIBRDKAFKA_LOGGER.addHandler(handler)
    try:
        client_config(Settings(librdkafka_debug="eos"))
        LIBRDKAFKA_LOGGER.debug("IDEMPSTATE: Idempotent producer state change Init -> RequestPID")
        LIBRDKAFKA_LOGGER.debug("IDEMPSTATE: Idempotent producer state change Init -> RequestPID")
    finally:
        LIBRDKAFKA_LOGGER.removeHandler(handler)

    assert len(records) == 2
    assert records[0].levelname == "INFO"


def test_debug_lines_at_info_keeps_higher_levels():
    record = _record(logging.WARNING, "GETPID: Failed to acquire idempotence PID")

    assert DebugLinesAtInfo().filter(record)
    assert record.levelno == logging.WARNING
