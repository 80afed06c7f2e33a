"""The worker's faust consumer starts on the real broker with the fetch minimum and wait of its settings."""

from __future__ import annotations

import asyncio
import time

import pytest

from support import isolated_settings
from topologies.execution_state import build_app

pytestmark = pytest.mark.integration


async def started_fetcher_settings(settings) -> tuple[int, int]:
    """Start the group consumer that the worker's app builds; return its fetcher's minimum bytes and wait in ms."""
    app = build_app(settings)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.start()
    try:
        return consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms
    finally:
        await consumer.stop()


def test_started_consumer_default_fetches(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path).replace(store="memory")

    assert asyncio.run(started_fetcher_settings(settings)) == (65536, 40)


def test_started_consumer_changed_fetches(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path).replace(
        store="memory", fetch_min_bytes=1, fetch_max_wait_seconds=0.5
    )

    assert asyncio.run(started_fetcher_settings(settings)) == (1, 500)


def test_running_worker_logs_fetches(module_worker):
    expected = "fetches at least 65536 bytes or waits at most 40 ms"
    deadline = time.monotonic() + 60
    log_text = ""

    while time.monotonic() < deadline:
        log_text = module_worker.log_path.read_text(errors="replace") if module_worker.log_path.exists() else ""
        if expected in log_text:
            break
        time.sleep(0.5)

    assert expected in log_text, f"no line with {expected!r} in the worker's log:\n{log_text[-3000:]}"
