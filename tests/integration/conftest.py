"""Fixtures for tests that run the worker against a real broker."""

from __future__ import annotations

from typing import Iterator

import pytest

from processor.config import Settings
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess
from support import isolated_settings


@pytest.fixture(scope="module")
def module_settings(kafka_bootstrap: str, tmp_path_factory) -> Settings:
    settings = isolated_settings(kafka_bootstrap, tmp_path_factory.mktemp("state"))
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def module_worker(module_settings: Settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    """One worker for every test of a module; tests use executions of their own."""
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    worker = WorkerProcess(module_settings, log_path).start()
    yield worker
    exit_code = worker.stop()
    assert exit_code == 0, f"worker exited with {exit_code}:\n{worker.log_tail()}"
