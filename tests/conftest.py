"""Shared pytest fixtures."""

from collections.abc import Iterator

import pytest

# tests/ has no __init__.py, so pytest's default "prepend" import mode puts
# this directory on sys.path and the helper imports as a top-level module.
from kafka_broker import kafka_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of one Kafka broker shared by the whole session.

    Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a broker in Docker or
    with scripts/kafka-local (see tests/kafka_broker.py). Mark tests that use
    it with @pytest.mark.integration.
    """
    with kafka_broker() as bootstrap_servers:
        yield bootstrap_servers
