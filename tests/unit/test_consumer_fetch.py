"""The fetch minimum and wait reach the group consumer that faust builds, and only when an app was given them."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from processor.config import Settings
from topologies.consumer_fetch import FetchSettings, apply_to_consumer, configure_fetches, fetch_settings_of
from topologies.execution_state import build_app


def built_consumer(app: faust.App):
    """The aiokafka consumer that ``app``'s consumer thread builds at start, built without starting it."""

    async def build_and_close():
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        # Nothing else closes a consumer built outside a start; closing it keeps aiokafka from warning.
        await consumer.stop()
        return consumer

    return asyncio.run(build_and_close())


def test_worker_app_default_fetches(tmp_path):
    app = build_app(Settings(store="memory", state_dir=tmp_path, metrics_port=0))

    consumer = built_consumer(app)

    assert consumer._fetch_min_bytes == 64 * 1024
    assert consumer._fetch_max_wait_ms == 40


def test_worker_app_configured_fetches(tmp_path):
    settings = Settings(store="memory", state_dir=tmp_path, metrics_port=0, fetch_min_bytes=1, fetch_max_wait_seconds=1.5)

    consumer = built_consumer(build_app(settings))

    assert consumer._fetch_min_bytes == 1
    assert consumer._fetch_max_wait_ms == 1500


def test_plain_app_keeps_defaults(tmp_path):
    build_app(Settings(store="memory", state_dir=tmp_path / "configured", metrics_port=0))
    plain = faust.App("plain-app", broker="kafka://127.0.0.1:9", store="memory://", datadir=str(tmp_path / "plain"))

    consumer = built_consumer(plain)

    assert fetch_settings_of(plain) is None
    assert consumer._fetch_min_bytes == 1
    assert consumer._fetch_max_wait_ms == 1500


@pytest.mark.parametrize("seconds, milliseconds", [(0.04, 40), (0.0004, 1), (0.0126, 13), (5.0, 5000)])
def test_wait_rounded_to_milliseconds(tmp_path, seconds, milliseconds):
    app = faust.App("wait-app", broker="kafka://127.0.0.1:9", store="memory://", datadir=str(tmp_path))

    settings = configure_fetches(app, 1024, seconds)

    assert settings == FetchSettings(min_bytes=1024, max_wait_ms=milliseconds)
    assert fetch_settings_of(app) == settings


def test_hook_wraps_faust_once(tmp_path):
    app = faust.App("hook-app", broker="kafka://127.0.0.1:9", store="memory://", datadir=str(tmp_path))
    configure_fetches(app, 1024, 0.01)
    wrapped = AIOKafkaConsumerThread._create_worker_consumer

    configure_fetches(app, 2048, 0.02)

    assert AIOKafkaConsumerThread._create_worker_consumer is wrapped
    assert built_consumer(app)._fetch_min_bytes == 2048


def test_unknown_consumer_raises():
    class OtherConsumer:
        _fetch_min_bytes = 1

    with pytest.raises(RuntimeError, match="_fetch_max_wait_ms"):
        apply_to_consumer(OtherConsumer(), FetchSettings(min_bytes=1024, max_wait_ms=10))
