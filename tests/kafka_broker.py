"""Kafka broker for the test session.

kafka_broker() picks the first source that applies:

1. KAFKA_BOOTSTRAP_SERVERS, when set: an existing cluster, used as is and
   never stopped.
2. An apache/kafka container started with testcontainers, when
   `docker info` reaches a Docker engine.
3. scripts/kafka-local on free ports, with its instance directory under
   .local/kafka/test-<port>, stopped and deleted at the end of the session.

local_sasl_broker() always starts its own scripts/kafka-local instance with
an extra SASL/PLAIN listener, because the brokers above have none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from processor.local_broker import free_ports as find_free_ports

logger = logging.getLogger(__name__)

BOOTSTRAP_SERVERS_ENV = "KAFKA_BOOTSTRAP_SERVERS"
KAFKA_IMAGE = "apache/kafka:4.0.1"

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL_SCRIPT = REPO_ROOT / "scripts" / "kafka-local"
LOCAL_INSTANCES_DIR = REPO_ROOT / ".local" / "kafka"

DOCKER_INFO_TIMEOUT_SECONDS = 5
BROKER_START_TIMEOUT_SECONDS = 120
# The first local start also downloads the broker jars with Maven.
KAFKA_LOCAL_START_TIMEOUT_SECONDS = 600
KAFKA_LOCAL_STOP_TIMEOUT_SECONDS = 120

# Kafka 4.0 logs this line (kafka.server.KafkaRaftServer) once broker and
# controller have started.
STARTED_LOG_PATTERN = "Kafka Server started"


def kafka_broker() -> contextlib.AbstractContextManager[str]:
    """Return a context manager that yields the bootstrap servers of a broker."""
    configured = os.environ.get(BOOTSTRAP_SERVERS_ENV, "").strip()
    if configured:
        logger.info("Using the Kafka cluster at %s from %s", configured, BOOTSTRAP_SERVERS_ENV)
        return contextlib.nullcontext(configured)

    if docker_engine_available():
        return container_broker()

    logger.info("No Docker engine found, so starting a broker with %s", KAFKA_LOCAL_SCRIPT)
    return local_script_broker()


def docker_engine_available() -> bool:
    """Check whether `docker info` reaches an engine within a few seconds."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=DOCKER_INFO_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextlib.contextmanager
def local_script_broker() -> Iterator[str]:
    """Start scripts/kafka-local on free ports and reset it afterwards."""
    port, controller_port = find_free_ports(2)
    instance_dir = LOCAL_INSTANCES_DIR / f"test-{port}"
    env = {
        **os.environ,
        "KAFKA_LOCAL_PORT": str(port),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(controller_port),
        "KAFKA_LOCAL_DIR": str(instance_dir),
    }

    started = run_kafka_local("start", env, KAFKA_LOCAL_START_TIMEOUT_SECONDS)
    if started.returncode != 0:
        # The script has already stopped the broker. The instance directory
        # stays so that its logs can be read.
        raise RuntimeError(
            f"scripts/kafka-local start failed with exit status {started.returncode}. "
            f"Logs are in {instance_dir / 'logs'}.\n{started.stderr}"
        )
    bootstrap_servers = started.stdout.strip().splitlines()[-1]
    logger.info("Started a local Kafka broker at %s in %s", bootstrap_servers, instance_dir)

    try:
        yield bootstrap_servers
    finally:
        reset = run_kafka_local("reset", env, KAFKA_LOCAL_STOP_TIMEOUT_SECONDS)
        if reset.returncode != 0:
            logger.error(
                "scripts/kafka-local reset of %s failed with exit status %d: %s",
                instance_dir,
                reset.returncode,
                reset.stderr,
            )


@dataclass(frozen=True)
class SaslBroker:
    """A local broker with a PLAINTEXT and a SASL_PLAINTEXT (PLAIN) listener."""

    plaintext_bootstrap: str
    sasl_bootstrap: str
    users: Mapping[str, str]


def kafka_local_unavailable_reason() -> str | None:
    """Return why scripts/kafka-local cannot start a broker here, or None when it can.

    Checks only that java and either the broker jars or mvn are present. The
    script itself checks the Java version.
    """
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    if shutil.which(java) is None:
        return f"java not found (looked for {java!r}): install Java 17 or newer, or set JAVA_HOME"
    have_jars = any((LOCAL_INSTANCES_DIR / "libs").glob("kafka_2.13-*.jar"))
    if not have_jars and shutil.which("mvn") is None:
        return "mvn not found and no broker jars in .local/kafka/libs: install Maven 3.8 or newer"
    return None


@contextlib.contextmanager
def local_sasl_broker(users: Mapping[str, str]) -> Iterator[SaslBroker]:
    """Start scripts/kafka-local with a SASL/PLAIN listener on free ports and reset it afterwards.

    ``users`` maps user names to passwords that the SASL listener accepts.
    """
    port, controller_port, sasl_port = find_free_ports(3)
    instance_dir = LOCAL_INSTANCES_DIR / f"test-sasl-{port}"
    env = {
        **os.environ,
        "KAFKA_LOCAL_PORT": str(port),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(controller_port),
        "KAFKA_LOCAL_SASL_PORT": str(sasl_port),
        "KAFKA_LOCAL_SASL_USERS": ",".join(f"{name}:{password}" for name, password in users.items()),
        "KAFKA_LOCAL_DIR": str(instance_dir),
    }

    started = run_kafka_local("start", env, KAFKA_LOCAL_START_TIMEOUT_SECONDS)
    if started.returncode != 0:
        raise RuntimeError(
            f"scripts/kafka-local start with a SASL listener failed with exit status {started.returncode}. "
            f"Logs are in {instance_dir / 'logs'}.\n{started.stderr}"
        )
    broker = SaslBroker(
        plaintext_bootstrap=started.stdout.strip().splitlines()[-1],
        sasl_bootstrap=f"127.0.0.1:{sasl_port}",
        users=dict(users),
    )
    logger.info("Started a local Kafka broker with SASL/PLAIN at %s in %s", broker.sasl_bootstrap, instance_dir)

    try:
        yield broker
    finally:
        reset = run_kafka_local("reset", env, KAFKA_LOCAL_STOP_TIMEOUT_SECONDS)
        if reset.returncode != 0:
            logger.error(
                "scripts/kafka-local reset of %s failed with exit status %d: %s",
                instance_dir,
                reset.returncode,
                reset.stderr,
            )


def run_kafka_local(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_LOCAL_SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def container_broker() -> Iterator[str]:
    """Run apache/kafka as a single KRaft node in a container.

    testcontainers' KafkaContainer runs the startup scripts of the Confluent
    image (testcontainers-python 4.8 to 4.15), so this uses a plain
    DockerContainer that configures the apache/kafka image through KAFKA_*
    variables.
    The advertised listener must contain the host port that Docker maps,
    which is known only after the container starts. The container therefore
    waits for that address in a file before it runs the image's start script.
    """
    # Imported here so that machines without Docker need not install testcontainers.
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    # NOTE: this container path has not yet run against a Docker engine.
    advertised_file = "/tmp/advertised-listeners"
    command = (
        f"while [ ! -s {advertised_file} ]; do sleep 0.1; done; "
        f'export KAFKA_ADVERTISED_LISTENERS="$(cat {advertised_file})"; '
        "exec /etc/kafka/docker/run"
    )
    container = DockerContainer(KAFKA_IMAGE).with_exposed_ports(9092).with_command(["sh", "-c", command])
    for name, value in container_broker_environment().items():
        container.with_env(name, value)

    logger.info("Starting %s with testcontainers", KAFKA_IMAGE)
    container.start()
    try:
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(9092))
        # The broker talks to itself on the BROKER listener, inside the container.
        listeners = f"PLAINTEXT://{host}:{port},BROKER://localhost:9094"
        exit_code, output = container.exec(
            ["sh", "-c", f"printf '%s' '{listeners}' > {advertised_file}.tmp && mv {advertised_file}.tmp {advertised_file}"]
        )
        if exit_code != 0:
            raise RuntimeError(f"writing the advertised listeners into the Kafka container failed: {output!r}")

        wait_for_logs(container, STARTED_LOG_PATTERN, timeout=BROKER_START_TIMEOUT_SECONDS)
        bootstrap_servers = f"{host}:{port}"
        logger.info("Started %s at %s", KAFKA_IMAGE, bootstrap_servers)
        yield bootstrap_servers
    finally:
        container.stop()


def container_broker_environment() -> dict[str, str]:
    """Return the broker settings of scripts/kafka-local as apache/kafka variables."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093,BROKER://localhost:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
