"""A background thread that reads the state topics from the beginning into a StateCache and keeps following them."""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from confluent_kafka import KafkaError, KafkaException
from google.protobuf.message import DecodeError

from processor.config import Settings
from processor.dashboard.cache import StateCache
from processor.state_reader import StateReader, StateTopicsMissing

log = logging.getLogger(__name__)

# Largest number of records taken from the consumer in one call.
BATCH_SIZE = 500

# Seconds between attempts to assign the state topics while they are missing
# or the brokers cannot be reached.
RETRY_SECONDS = 5.0

# Timeout of each request for metadata and end offsets, as the state command's default.
REQUEST_TIMEOUT_SECONDS = 30.0

# Seconds between two log lines about the same kind of consumer error.
ERROR_LOG_INTERVAL_SECONDS = 60.0


class StateFollower(StateReader):
    """Follow the four state topics by assignment, without a consumer group, into ``cache``.

    The follower never commits offsets, so a restart reads every topic from
    the beginning again. A worker restart does not affect it: it reads the
    topics, not the worker. The cache is marked ready once every partition
    reached the end offset it had when reading started.
    """

    def __init__(self, settings: Settings, cache: StateCache, retry_seconds: float = RETRY_SECONDS) -> None:
        self.cache = cache
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_error_logged: dict[str, float] = {}
        self._has_error = False
        super().__init__(settings)

    def _assign(self, timeout_seconds: float) -> None:
        # StateReader.__init__ assigns at once and raises when a topic is
        # missing; the follower assigns in its thread and retries instead.
        pass

    def start(self) -> "StateFollower":
        self._thread = threading.Thread(target=self._run, name="state-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
            if self._thread.is_alive():
                log.warning("state follower thread did not stop within %.0f s", timeout_seconds)
                return
        self.close()

    def _run(self) -> None:
        try:
            targets = self._assign_with_retry()
            if targets is not None:
                self._follow(targets)
        except Exception:
            log.exception("state follower stopped by an unexpected error; the dashboard no longer updates")
            self.cache.set_error("the dashboard stopped reading the state topics; see its log")

    def _assign_with_retry(self) -> Optional[dict[tuple[str, int], int]]:
        """Assign every state topic partition and return their end offsets; None when stopped first."""
        while not self._stop.is_set():
            try:
                StateReader._assign(self, REQUEST_TIMEOUT_SECONDS)
                targets = self._end_offsets(REQUEST_TIMEOUT_SECONDS)
            except (KafkaException, StateTopicsMissing) as error:
                # Missing topics appear once a worker starts, so they are retried too.
                message = f"cannot read the state topics from {self.settings.bootstrap_servers}: {error}"
                self._set_error(message)
                self._log_error("assign", "%s; retrying every %.0f s", message, self.retry_seconds)
                self._stop.wait(self.retry_seconds)
                continue
            self._set_error("")
            log.info(
                "reading %d partitions of %s from the beginning",
                self.partition_count,
                ", ".join(self.kind_by_topic),
            )
            return targets
        return None

    def _follow(self, targets: dict[tuple[str, int], int]) -> None:
        started = time.monotonic()
        remaining = {partition for partition, end in targets.items() if end > 0}
        ready = False

        while not self._stop.is_set():
            messages = self.consumer.consume(BATCH_SIZE, 0.5)
            for message in messages:
                error = message.error()
                partition = (message.topic(), message.partition())
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if partition in remaining and message.offset() >= targets[partition]:
                            remaining.discard(partition)
                        continue
                    self._on_consumer_error(error)
                    continue

                self._store(message)
                if partition in remaining and message.offset() + 1 >= targets[partition]:
                    remaining.discard(partition)

            if not remaining and not ready:
                self._mark_ready(started)
                ready = True

    def _store(self, message) -> None:
        kind = self.kind_by_topic[message.topic()]
        key = message.key().decode("utf-8", errors="replace") if message.key() is not None else ""
        try:
            self.cache.apply(kind, key, message.value())
        except DecodeError as error:
            self._log_error(
                "decode",
                "skipped undecodable %s record %r at %s[%d]@%d: %s",
                kind.value,
                key,
                message.topic(),
                message.partition(),
                message.offset(),
                error,
            )
        if self._has_error:
            self._set_error("")

    def _mark_ready(self, started: float) -> None:
        self.cache.mark_ready()
        status = self.cache.status()
        log.info(
            "read %d records of %d executions from the state topics in %.1f s; following new records",
            status.records,
            status.executions,
            time.monotonic() - started,
        )

    def _on_consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        message = f"error while reading the state topics: {error.str()}"
        self._set_error(message)
        self._log_error(error.name(), "%s", message)

    def _set_error(self, message: str) -> None:
        self._has_error = bool(message)
        self.cache.set_error(message)

    def _log_error(self, kind: str, text: str, *args: object) -> None:
        """Log a warning at most once a minute per kind of error."""
        now = time.monotonic()
        if now - self._last_error_logged.get(kind, -ERROR_LOG_INTERVAL_SECONDS) >= ERROR_LOG_INTERVAL_SECONDS:
            self._last_error_logged[kind] = now
            log.warning(text, *args)
