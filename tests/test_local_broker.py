"""Tests of the session Kafka broker and of scripts/kafka-local."""

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from kafka_broker import BOOTSTRAP_SERVERS_ENV, KAFKA_LOCAL_SCRIPT, find_free_ports

CLIENT_TIMEOUT_SECONDS = 30


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    """Create a one-partition topic with a unique name and delete it afterwards."""
    name = f"test-local-broker-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    created[name].result(timeout=CLIENT_TIMEOUT_SECONDS)
    yield name
    deleted = admin.delete_topics([name])
    deleted[name].result(timeout=CLIENT_TIMEOUT_SECONDS)


def poll_one(consumer: Consumer, timeout_seconds: float) -> Message | None:
    """Poll until one record arrives or the timeout passes, raising on consumer errors."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is not None:
            raise AssertionError(f"consumer error: {message.error()}")
        return message
    return None


@pytest.mark.integration
def test_broker_round_trips_record(kafka_bootstrap: str, topic: str) -> None:
    deliveries: list[tuple[KafkaError | None, Message]] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.produce(
        topic,
        key=b"execution-1",
        value=b"RUNNING",
        on_delivery=lambda error, message: deliveries.append((error, message)),
    )
    assert producer.flush(CLIENT_TIMEOUT_SECONDS) == 0, "producer still has undelivered records"
    assert len(deliveries) == 1
    delivery_error, delivered = deliveries[0]
    assert delivery_error is None, f"delivery failed: {delivery_error}"

    # Subscribing through a consumer group also checks that the broker can
    # create __consumer_offsets with one replica.
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{topic}-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        received = poll_one(consumer, CLIENT_TIMEOUT_SECONDS)
        assert received is not None, f"no record arrived on {topic} within {CLIENT_TIMEOUT_SECONDS}s"
        assert received.topic() == topic
        assert received.partition() == delivered.partition()
        assert received.offset() == delivered.offset()
        assert received.key() == b"execution-1"
        assert received.value() == b"RUNNING"
        consumer.commit(message=received, asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.integration
@pytest.mark.skipif(
    bool(os.environ.get(BOOTSTRAP_SERVERS_ENV)),
    reason="an existing cluster given by KAFKA_BOOTSTRAP_SERVERS has its own settings",
)
def test_broker_disables_topic_auto_creation(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    broker_ids = list(admin.list_topics(timeout=CLIENT_TIMEOUT_SECONDS).brokers)
    assert len(broker_ids) == 1, f"expected a single-node cluster, found brokers {broker_ids}"

    resource = ConfigResource(ResourceType.BROKER, str(broker_ids[0]))
    configs = admin.describe_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_SECONDS)

    assert configs["auto.create.topics.enable"].value == "false"
    assert configs["group.initial.rebalance.delay.ms"].value == "0"
    assert configs["offsets.topic.replication.factor"].value == "1"


def run_kafka_local(command: str, instance_dir: Path, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_LOCAL_PORT": str(find_free_ports(1)[0]),
        "KAFKA_LOCAL_DIR": str(instance_dir),
        **settings,
    }
    return subprocess.run(
        [str(KAFKA_LOCAL_SCRIPT), command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kafka_local_status_of_missing_instance(tmp_path: Path) -> None:
    instance_dir = tmp_path / "instance"

    result = run_kafka_local("status", instance_dir, cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("not running")
    assert str(instance_dir) in result.stdout
    assert not instance_dir.exists(), "status must not create the instance directory"


def test_kafka_local_status_removes_stale_pid_file(tmp_path: Path) -> None:
    instance_dir = tmp_path / "instance"
    instance_dir.mkdir()
    pid_file = instance_dir / "broker.pid"
    # A live process that is not a broker of this instance, as after pid reuse.
    pid_file.write_text(f"{os.getpid()}\n")

    result = run_kafka_local("status", instance_dir, cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("not running")
    assert not pid_file.exists()


def test_kafka_local_stop_of_stopped_instance(tmp_path: Path) -> None:
    instance_dir = tmp_path / "instance"

    result = run_kafka_local("stop", instance_dir, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "not running" in result.stderr


def test_kafka_local_reset_keeps_foreign_directory(tmp_path: Path) -> None:
    foreign_dir = tmp_path / "not-an-instance"
    foreign_dir.mkdir()
    kept_file = foreign_dir / "keep.txt"
    kept_file.write_text("data\n")

    result = run_kafka_local("reset", foreign_dir, cwd=tmp_path)

    assert result.returncode == 1
    assert "refusing to delete" in result.stderr
    assert kept_file.exists()


@pytest.mark.parametrize(
    ("settings", "expected_error"),
    [
        ({"KAFKA_LOCAL_PORT": "not-a-port"}, "invalid KAFKA_LOCAL_PORT"),
        ({"KAFKA_LOCAL_PORT": "70000"}, "invalid KAFKA_LOCAL_PORT"),
        ({"KAFKA_LOCAL_PORT": "29092", "KAFKA_LOCAL_CONTROLLER_PORT": "29092"}, "set two different ports"),
        ({"KAFKA_LOCAL_HEAP": "lots"}, "invalid KAFKA_LOCAL_HEAP"),
        ({"KAFKA_LOCAL_START_TIMEOUT": "0"}, "invalid KAFKA_LOCAL_START_TIMEOUT"),
    ],
)
def test_kafka_local_rejects_invalid_settings(tmp_path: Path, settings: dict[str, str], expected_error: str) -> None:
    result = run_kafka_local("status", tmp_path / "instance", cwd=tmp_path, **settings)

    assert result.returncode == 1
    assert expected_error in result.stderr
