"""Settings from the environment and their validation in processor.config."""

import dataclasses
import os
from pathlib import Path

import pytest

from processor.config import ConfigError, Settings, Topics
from processor.events import EventKind


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Remove the processor's variables so that the developer's shell cannot change a result."""
    for name in list(os.environ):
        if name.startswith("FLYTE_STATE_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def test_from_env_defaults():
    assert Settings.from_env() == Settings()


def test_from_env_values(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092,127.0.0.1:9093")
    monkeypatch.setenv("FLYTE_STATE_APP_ID", "flyte-state-test")
    monkeypatch.setenv("FLYTE_STATE_PARTITIONS", "12")
    monkeypatch.setenv("FLYTE_STATE_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("FLYTE_STATE_CREATE_TOPICS", "false")
    monkeypatch.setenv("FLYTE_STATE_STORE", "rocksdb")
    monkeypatch.setenv("FLYTE_STATE_DIR", "/var/lib/flyte-state")
    monkeypatch.setenv("FLYTE_STATE_MAX_EVENT_BYTES", "2048")
    monkeypatch.setenv("FLYTE_STATE_LOG_LEVEL", "debug")
    monkeypatch.setenv("FLYTE_STATE_TOPIC_NODE_EVENTS", "custom.node")

    settings = Settings.from_env()

    assert settings.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9093"
    assert settings.app_id == "flyte-state-test"
    assert settings.partitions == 12
    assert settings.replication_factor == 3
    assert settings.create_topics is False
    assert settings.store == "rocksdb"
    assert settings.state_dir == Path("/var/lib/flyte-state")
    assert settings.max_event_bytes == 2048
    assert settings.log_level == "DEBUG"
    assert settings.topics.node_events == "custom.node"
    assert settings.topics.input_topic(EventKind.NODE) == "custom.node"


def test_empty_variable_uses_default(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_PARTITIONS", "")
    monkeypatch.setenv("FLYTE_STATE_CREATE_TOPICS", "")

    settings = Settings.from_env()

    assert settings.partitions == Settings.partitions
    assert settings.create_topics is Settings.create_topics


@pytest.mark.parametrize(
    "name",
    [
        "FLYTE_STATE_PARTITIONS",
        "FLYTE_STATE_REPLICATION_FACTOR",
        "FLYTE_STATE_MAX_EVENT_BYTES",
        "FLYTE_STATE_MAX_RECORD_BYTES",
    ],
)
@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-3"])
def test_bad_int(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_bool_values(monkeypatch, value, expected):
    monkeypatch.setenv("FLYTE_STATE_CREATE_TOPICS", value)

    assert Settings.from_env().create_topics is expected


@pytest.mark.parametrize("value", ["maybe", "2", "y"])
def test_bad_bool(monkeypatch, value):
    monkeypatch.setenv("FLYTE_STATE_CREATE_TOPICS", value)

    with pytest.raises(ConfigError, match="FLYTE_STATE_CREATE_TOPICS"):
        Settings.from_env()


@pytest.mark.parametrize("value", ["localhost", "localhost:", ":9092", "localhost:http", "a:1,b", " "])
def test_bad_bootstrap(monkeypatch, value):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", value)

    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env()


@pytest.mark.parametrize("value", ["127.0.0.1:9092", "localhost:9092, broker-2:9093", "[::1]:9092"])
def test_good_bootstrap(monkeypatch, value):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", value)

    assert Settings.from_env().bootstrap_servers == value


def test_unknown_store(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_STORE", "redis")

    with pytest.raises(ConfigError, match="FLYTE_STATE_STORE"):
        Settings.from_env()


def test_event_limit_above_record_limit(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_MAX_EVENT_BYTES", "2000")
    monkeypatch.setenv("FLYTE_STATE_MAX_RECORD_BYTES", "1000")

    with pytest.raises(ConfigError) as caught:
        Settings.from_env()

    assert "FLYTE_STATE_MAX_EVENT_BYTES" in str(caught.value)
    assert "FLYTE_STATE_MAX_RECORD_BYTES" in str(caught.value)


def test_duplicate_topic_names(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_TOPIC_NODE_EVENTS", "flyte.events.workflow")

    with pytest.raises(ConfigError, match="topic names must differ"):
        Settings.from_env()


def test_repartition_topic_default():
    assert Settings(app_id="app").repartition_topic == "app-events-by-execution"


def test_repartition_topic_explicit(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_TOPIC_REPARTITION", "events.by-execution")

    assert Settings.from_env().repartition_topic == "events.by-execution"


def test_replace_validates():
    with pytest.raises(ConfigError, match="FLYTE_STATE_STORE"):
        Settings().replace(store="sqlite")


def all_topic_names(settings: Settings) -> list[str]:
    return [*settings.topics.inputs, *settings.topics.states, settings.topics.dead_letter, settings.repartition_topic]


def test_with_topic_prefix_topics():
    settings = Settings().with_topic_prefix("t1-")

    for name in all_topic_names(settings):
        assert name.startswith("t1-"), name


def test_with_topic_prefix_each_field():
    topics = Topics(repartition="events.by-execution", cloudevents="flyteadmin.cloudevents")
    settings = Settings(topics=topics).with_topic_prefix("t1-")

    for field in dataclasses.fields(Topics):
        assert getattr(settings.topics, field.name) == "t1-" + getattr(topics, field.name), field.name


def test_with_topic_prefix_app_id():
    settings = Settings(app_id="app").with_topic_prefix("t1-")

    assert settings.app_id == "t1-app"
    assert settings.repartition_topic == "t1-app-events-by-execution"


def test_with_topic_prefix_keeps_other_settings():
    settings = Settings(partitions=3, store="rocksdb").with_topic_prefix("t1-")

    assert settings.partitions == 3
    assert settings.store == "rocksdb"


def test_metrics_endpoint_from_env(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_METRICS_PORT", "9200")
    monkeypatch.setenv("FLYTE_STATE_METRICS_ADDRESS", "127.0.0.1")

    settings = Settings.from_env()

    assert settings.metrics_port == 9200
    assert settings.metrics_address == "127.0.0.1"


def test_metrics_port_zero_allowed(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_METRICS_PORT", "0")

    assert Settings.from_env().metrics_port == 0


@pytest.mark.parametrize("value", ["abc", "-1", "65536"])
def test_bad_metrics_port(monkeypatch, value):
    monkeypatch.setenv("FLYTE_STATE_METRICS_PORT", value)

    with pytest.raises(ConfigError, match="FLYTE_STATE_METRICS_PORT"):
        Settings.from_env()


def test_metrics_settings_survive_to_env(monkeypatch):
    settings = Settings(metrics_port=0, metrics_address="127.0.0.1")
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)

    rebuilt = Settings.from_env()

    assert rebuilt.metrics_port == 0
    assert rebuilt.metrics_address == "127.0.0.1"


def test_batch_settings_from_env(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_BATCH_MAX_EVENTS", "500")
    monkeypatch.setenv("FLYTE_STATE_BATCH_LINGER_SECONDS", "0.1")

    settings = Settings.from_env()

    assert settings.batch_max_events == 500
    assert settings.batch_linger_seconds == 0.1
    assert Settings.from_env().to_env()["FLYTE_STATE_BATCH_LINGER_SECONDS"] == "0.1"


@pytest.mark.parametrize(
    "name, value",
    [
        ("FLYTE_STATE_BATCH_MAX_EVENTS", "0"),
        ("FLYTE_STATE_BATCH_LINGER_SECONDS", "0"),
        ("FLYTE_STATE_BATCH_LINGER_SECONDS", "-1"),
        ("FLYTE_STATE_BATCH_LINGER_SECONDS", "nan"),
        ("FLYTE_STATE_BATCH_LINGER_SECONDS", "61"),
    ],
)
def test_bad_batch_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


def test_fetch_settings_default(monkeypatch):
    monkeypatch.delenv("FLYTE_STATE_FETCH_MIN_BYTES", raising=False)
    monkeypatch.delenv("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", raising=False)

    settings = Settings.from_env()

    assert settings.fetch_min_bytes == 65536
    assert settings.fetch_max_wait_seconds == 0.04


def test_fetch_settings_from_env(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_FETCH_MIN_BYTES", "1")
    monkeypatch.setenv("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", "0.5")

    settings = Settings.from_env()

    assert settings.fetch_min_bytes == 1
    assert settings.fetch_max_wait_seconds == 0.5
    assert settings.to_env()["FLYTE_STATE_FETCH_MIN_BYTES"] == "1"
    assert settings.to_env()["FLYTE_STATE_FETCH_MAX_WAIT_SECONDS"] == "0.5"


@pytest.mark.parametrize(
    "name, value",
    [
        ("FLYTE_STATE_FETCH_MIN_BYTES", "0"),
        ("FLYTE_STATE_FETCH_MIN_BYTES", "52428801"),
        ("FLYTE_STATE_FETCH_MIN_BYTES", "64k"),
        ("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", "0"),
        ("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", "-0.1"),
        ("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", "5.5"),
        ("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", "nan"),
    ],
)
def test_bad_fetch_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


def test_standby_replicas_default_one(monkeypatch):
    monkeypatch.delenv("FLYTE_STATE_STANDBY_REPLICAS", raising=False)

    assert Settings.from_env().standby_replicas == 1


def test_standby_replicas_reach_the_faust_app(monkeypatch, tmp_path):
    from topologies.execution_state import build_app

    monkeypatch.setenv("FLYTE_STATE_STANDBY_REPLICAS", "0")
    settings = Settings.from_env().replace(state_dir=tmp_path)

    assert settings.to_env()["FLYTE_STATE_STANDBY_REPLICAS"] == "0"
    assert build_app(settings).conf.table_standby_replicas == 0


@pytest.mark.parametrize("value", ["-1", "one"])
def test_bad_standby_replicas(monkeypatch, value):
    monkeypatch.setenv("FLYTE_STATE_STANDBY_REPLICAS", value)

    with pytest.raises(ConfigError, match="FLYTE_STATE_STANDBY_REPLICAS"):
        Settings.from_env()
