"""StateReader.wait_until pauses between polls that read nothing."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from processor.state_reader import IDLE_WAIT_SECONDS, StateReader


def _reader_without_broker() -> StateReader:
    """Return a StateReader whose poll the test replaces, so that only wait_until's loop runs."""
    reader = object.__new__(StateReader)
    reader.records = {}
    return reader


def test_wait_until_pauses_when_idle():
    reader = _reader_without_broker()
    polls = []

    def poll(seconds: float) -> int:
        polls.append(seconds)
        return 0

    reader.poll = poll

    assert reader.wait_until(lambda records: False, timeout_seconds=1.0) is False

    # Without the pause this loop asked the brokers thousands of times a second.
    assert len(polls) <= 1.0 / IDLE_WAIT_SECONDS + 2


def test_wait_until_retries_timed_out_poll():
    reader = _reader_without_broker()
    polls = []

    def poll(seconds: float) -> int:
        polls.append(seconds)
        if len(polls) == 1:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to query partition leaders"))
        reader.records = {"ready": True}
        return 1

    reader.poll = poll

    assert reader.wait_until(lambda records: records.get("ready", False), timeout_seconds=5.0) is True
    assert len(polls) == 2


def test_wait_until_raises_error_at_deadline():
    reader = _reader_without_broker()

    def poll(seconds: float) -> int:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to query partition leaders"))

    reader.poll = poll

    with pytest.raises(KafkaException):
        reader.wait_until(lambda records: False, timeout_seconds=0.3)


class _StoppedEarlyReader:
    """A reader that returns no records and did not reach the end of the state topics."""

    def __init__(self, settings, metadata_timeout_seconds: float = 30.0) -> None:
        self.caught_up = False

    def read_all(self, timeout_seconds: float):
        from processor.fold.execution import RecordKind

        return {kind: {} for kind in RecordKind}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def test_state_command_warns_when_read_stopped_early(monkeypatch, caplog):
    from processor import cli, state_reader

    monkeypatch.setattr(state_reader, "StateReader", _StoppedEarlyReader)

    assert cli.main(["--bootstrap-servers", "127.0.0.1:9", "state", "--timeout", "0.5"]) == 0
    assert "before the end of the state topics" in caplog.text
