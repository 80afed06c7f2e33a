"""Fixtures for tests that run the worker against a real broker."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from processor.config import Settings
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_STREAMS = REPO_ROOT.parent / "shared" / "streams"
EXAMPLE_STREAMS = REPO_ROOT / "examples" / "streams"

# Three partitions, so that a wrong partitioner shows up as a wrong partition.
TEST_PARTITIONS = 3


def streams_dir() -> Path:
    return SHARED_STREAMS if SHARED_STREAMS.is_dir() else EXAMPLE_STREAMS


def stream_files() -> list[Path]:
    return sorted(streams_dir().glob("*.jsonl"))


def isolated_settings(bootstrap: str, state_dir: Path) -> Settings:
    """Settings whose topics and consumer group no other test uses."""
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    base = Settings(bootstrap_servers=bootstrap, partitions=TEST_PARTITIONS, state_dir=state_dir)
    return base.with_topic_prefix(prefix)


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
