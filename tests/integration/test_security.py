"""SASL/PLAIN on a local broker, with clients built from processor.security.

The module starts its own scripts/kafka-local instance with a SASL_PLAINTEXT
listener, because the session broker has none. Each test connects to the
SASL port only, so a client that ignored its credentials would fail there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from kafka_broker import SaslBroker, kafka_local_unavailable_reason, local_sasl_broker, run_kafka_local
from processor.security import SecuritySettings, confluent_settings, faust_broker_credentials, to_env

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

USERS = {"admin": "admin-secret", "flyte": "flyte-secret"}
WRONG_PASSWORD = "not-the-flyte-password"

CLIENT_TIMEOUT_SECONDS = 30
AUTH_ERROR_TIMEOUT_SECONDS = 15
FAUST_RECEIVE_TIMEOUT_SECONDS = 60
FAUST_STOP_TIMEOUT_SECONDS = 30

# A faust worker with one agent that appends every value of a topic to a
# file. It reads its security settings with SecuritySettings.from_env, so the
# test passes them the way the processor passes them to worker processes.
FAUST_WORKER_SCRIPT = """\
import sys

import faust

from processor.security import SecuritySettings, faust_broker_credentials

bootstrap, topic_name, output_path, data_dir = sys.argv[1:5]
app = faust.App(
    f"test-sasl-{topic_name}",
    broker=f"kafka://{bootstrap}",
    broker_credentials=faust_broker_credentials(SecuritySettings.from_env()),
    store="memory://",
    datadir=data_dir,
    autodiscover=False,
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)
topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def append_values(stream):
    async for value in stream:
        with open(output_path, "ab") as output:
            output.write(value + b"\\n")


faust.Worker(app, loglevel="INFO").execute_from_commandline()
"""


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[SaslBroker]:
    reason = kafka_local_unavailable_reason()
    if reason is not None:
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if external:
            pytest.skip(
                f"KAFKA_BOOTSTRAP_SERVERS={external} has no SASL listener that these tests know of, "
                f"and no local broker with one can start: {reason}"
            )
        pytest.skip(f"no local broker with a SASL listener can start: {reason}")
    with local_sasl_broker(USERS) as broker:
        yield broker


def flyte_security(password: str = USERS["flyte"]) -> SecuritySettings:
    return SecuritySettings(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="flyte",
        sasl_password=password,
    )


def client_config(broker: SaslBroker, security: SecuritySettings) -> dict:
    return {"bootstrap.servers": broker.sasl_bootstrap, **confluent_settings(security)}


def create_topic(broker: SaslBroker) -> str:
    """Create a one-partition topic through the SASL listener and return its name."""
    name = f"test-sasl-{uuid.uuid4().hex[:10]}"
    admin = AdminClient(client_config(broker, flyte_security()))
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(CLIENT_TIMEOUT_SECONDS)
    return name


def produce(broker: SaslBroker, topic: str, key: bytes, value: bytes) -> None:
    delivery_errors = []
    producer = Producer(client_config(broker, flyte_security()))
    producer.produce(topic, key=key, value=value, on_delivery=lambda error, _message: delivery_errors.append(error))
    remaining = producer.flush(CLIENT_TIMEOUT_SECONDS)
    assert remaining == 0, f"{remaining} record(s) not delivered within {CLIENT_TIMEOUT_SECONDS}s"
    assert delivery_errors == [None]


def test_confluent_clients_round_trip(sasl_broker: SaslBroker) -> None:
    topic = create_topic(sasl_broker)

    admin = AdminClient(client_config(sasl_broker, flyte_security()))
    metadata = admin.list_topics(timeout=CLIENT_TIMEOUT_SECONDS)
    assert topic in metadata.topics
    # Metadata fetched on the SASL listener advertises that listener.
    assert [f"{broker.host}:{broker.port}" for broker in metadata.brokers.values()] == [sasl_broker.sasl_bootstrap]

    produce(sasl_broker, topic, key=b"execution-1", value=b"over-sasl")

    consumer = Consumer(
        {
            **client_config(sasl_broker, flyte_security()),
            "group.id": f"test-sasl-reader-{uuid.uuid4().hex[:10]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        message = None
        deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        assert message is not None, f"no record on {topic} within {CLIENT_TIMEOUT_SECONDS}s"
        assert message.error() is None
        assert message.key() == b"execution-1"
        assert message.value() == b"over-sasl"
    finally:
        consumer.close()


def test_confluent_wrong_password_fails(sasl_broker: SaslBroker) -> None:
    errors: list[KafkaError] = []
    producer = Producer(
        {
            **client_config(sasl_broker, flyte_security(WRONG_PASSWORD)),
            "error_cb": errors.append,
            # The same failure reaches error_cb, so log_level 0 only keeps
            # librdkafka's retries from printing a line every 300 ms.
            "log_level": 0,
        }
    )
    deadline = time.monotonic() + AUTH_ERROR_TIMEOUT_SECONDS
    while not any(error.code() == KafkaError._AUTHENTICATION for error in errors) and time.monotonic() < deadline:
        producer.poll(0.2)

    auth_errors = [error.str() for error in errors if error.code() == KafkaError._AUTHENTICATION]
    assert auth_errors, f"no authentication error within {AUTH_ERROR_TIMEOUT_SECONDS}s, got {[e.str() for e in errors]}"
    assert "SASL authentication error" in auth_errors[0]
    assert "Authentication failed" in auth_errors[0]
    assert WRONG_PASSWORD not in auth_errors[0]


def test_faust_credentials_wrong_password_fails(sasl_broker: SaslBroker, caplog: pytest.LogCaptureFixture) -> None:
    # The aiokafka settings that faust's consumers and producers get from
    # these credentials (faust.transport.drivers.aiokafka).
    auth = credentials_to_aiokafka_auth(faust_broker_credentials(flyte_security(WRONG_PASSWORD)))

    async def start_producer() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=sasl_broker.sasl_bootstrap, **auth)
        try:
            await asyncio.wait_for(producer.start(), AUTH_ERROR_TIMEOUT_SECONDS)
        finally:
            await producer.stop()

    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        with pytest.raises(KafkaConnectionError):
            asyncio.run(start_producer())

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SaslAuthenticationFailed" in logged
    assert "Authentication failed" in logged
    assert WRONG_PASSWORD not in logged


def test_faust_worker_consumes_over_sasl(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    topic = create_topic(sasl_broker)
    produce(sasl_broker, topic, key=b"execution-2", value=b"for-faust")

    script = tmp_path / "faust_worker.py"
    script.write_text(FAUST_WORKER_SCRIPT)
    output_path = tmp_path / "values.txt"
    log_path = tmp_path / "worker.log"
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **to_env(flyte_security()), "PYTHONPATH": python_path}

    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, str(script), sasl_broker.sasl_bootstrap, topic, str(output_path), str(tmp_path / "data")],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + FAUST_RECEIVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline and worker.poll() is None:
            if output_path.exists() and b"for-faust" in output_path.read_bytes():
                break
            time.sleep(0.2)
        received = output_path.read_bytes() if output_path.exists() else b""
        log_tail = log_path.read_text(errors="replace")[-4000:]
        assert worker.poll() is None, f"faust worker exited with {worker.returncode}:\n{log_tail}"
        assert received == b"for-faust\n", f"faust worker received {received!r}:\n{log_tail}"
    finally:
        worker.terminate()
        try:
            exit_code = worker.wait(FAUST_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            raise
    assert exit_code == 0, f"faust worker exited with {exit_code} after SIGTERM:\n{log_path.read_text(errors='replace')[-4000:]}"


@pytest.mark.parametrize(
    ("sasl_port", "users", "expected_error"),
    [
        ("39094", "admin", "invalid entry in KAFKA_LOCAL_SASL_USERS: expected name:password"),
        ("39094", "bad name:secret-1", "invalid user name 'bad name'"),
        ("39094", 'admin:se"cret-2', "invalid password of user 'admin'"),
        ("39094", "admin:se cret-3", "invalid password of user 'admin'"),
        ("39094", "admin:", "invalid password of user 'admin'"),
        ("39094", "admin:a,admin:b", "user 'admin' appears twice"),
        ("39092", "admin:admin-secret", "KAFKA_LOCAL_SASL_PORT 39092 is also the client or controller port"),
        ("sasl", "admin:admin-secret", "invalid KAFKA_LOCAL_SASL_PORT 'sasl'"),
    ],
)
def test_kafka_local_rejects_invalid_sasl_settings(
    tmp_path: Path, sasl_port: str, users: str, expected_error: str
) -> None:
    env = {
        **os.environ,
        "KAFKA_LOCAL_DIR": str(tmp_path / "instance"),
        "KAFKA_LOCAL_PORT": "39092",
        "KAFKA_LOCAL_SASL_PORT": sasl_port,
        "KAFKA_LOCAL_SASL_USERS": users,
    }

    result = run_kafka_local("status", env, timeout=30)

    assert result.returncode == 1
    assert expected_error in result.stderr
    for password in ("secret-1", "se\"cret-2", "se cret-3"):
        assert password not in result.stderr


def test_worker_folds_stream_over_sasl(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    from processor import expectations
    from processor.config import Settings
    from processor.publisher import EventPublisher
    from processor.topics import ensure_topics
    from processor.worker_process import WorkerProcess
    from support import isolated_settings, stream_files, wait_for_facts

    settings: Settings = isolated_settings(sasl_broker.sasl_bootstrap, tmp_path / "state").replace(
        security=flyte_security()
    )
    ensure_topics(settings)
    stream = stream_files()[0]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        EventPublisher(settings).publish_files([str(stream)])
        failures = wait_for_facts(settings, expectations.load(stream.with_suffix(".expect.json")), worker)
    finally:
        exit_code = worker.stop()

    assert failures == []
    assert exit_code == 0, worker.log_tail()


def test_worker_wrong_password_exits(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    from support import isolated_settings, run_cli

    settings = isolated_settings(sasl_broker.sasl_bootstrap, tmp_path / "state").replace(
        security=flyte_security(WRONG_PASSWORD), connect_timeout_seconds=20.0
    )

    result = run_cli(settings, "worker")

    assert result.returncode == 2
    assert "authentication to Kafka at" in result.stderr
    assert WRONG_PASSWORD not in result.stderr
