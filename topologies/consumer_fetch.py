"""The fetch minimum and wait of the worker's faust consumer.

faust-streaming 0.15.3 builds its aiokafka consumer without a fetch minimum,
so aiokafka's default of 1 byte applies, and the broker responds to a fetch
as soon as it has any record for it. Events that arrive at a steady rate
then come in many small fetches, and each fetch costs the consumer's
thread, faust's hand-over and the broker a fixed amount of work. Two workers
at 2,500 events/s each made about 220 fetches a second of 11 events each,
and with a minimum of 64 KiB and a wait of 40 ms about 21 fetches of 115
events (docs/benchmarks.md, "Fetches of at least 64 KiB").

``configure_fetches(app, ...)`` gives an app a fetch minimum and wait. The
consumer that the app builds next requests that the broker hold each fetch
until it has that many bytes or the wait has passed. The wait adds at most its
length to the time from an event's arrival to its fold. It also sets how
often an idle consumer fetches: about 24 times a second with a wait of 40
ms, against less than once with faust's 1.5 s. An idle worker then used
about 3% of a core instead of 0.7%. The same consumer reads the changelogs
of the tables, so recovery and standby copies fetch with these settings too.

Contract: only the group consumer of faust's aiokafka transport
(``kafka://``) changes. A faust client-only app and the confluent-kafka
clients keep their settings, and so does an app without
``configure_fetches`` (aiokafka's 1 byte and faust's wait of 1.5 s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from topologies.faust_fixes import wrap_once

log = logging.getLogger(__name__)

# Name of the app attribute that stores its FetchSettings.
_SETTINGS_ATTRIBUTE = "_flyte_state_fetch_settings"

# The attributes in which aiokafka's consumer keeps the fetch settings of its
# constructor until start() builds its fetcher from them.
_CONSUMER_MIN_BYTES = "_fetch_min_bytes"
_CONSUMER_MAX_WAIT_MS = "_fetch_max_wait_ms"


@dataclass(frozen=True)
class FetchSettings:
    """Fetch minimum in bytes, and the maximum time in milliseconds that the broker waits to reach it."""

    min_bytes: int
    max_wait_ms: int


def configure_fetches(app: faust.App, min_bytes: int, max_wait_seconds: float) -> FetchSettings:
    """Make the group consumer that ``app`` builds fetch at least ``min_bytes``, waiting at most ``max_wait_seconds``.

    Call it before the app starts; a consumer already built keeps its settings.
    """
    _apply_fetch_settings_hook()
    settings = FetchSettings(min_bytes=min_bytes, max_wait_ms=max(1, round(max_wait_seconds * 1000)))
    setattr(app, _SETTINGS_ATTRIBUTE, settings)
    return settings


def fetch_settings_of(app: faust.App) -> FetchSettings | None:
    """Return the FetchSettings that ``configure_fetches`` gave ``app``, or None."""
    return getattr(app, _SETTINGS_ATTRIBUTE, None)


def apply_to_consumer(consumer, settings: FetchSettings) -> None:
    """Set the fetch settings of an aiokafka consumer that has not started yet.

    Raises RuntimeError when aiokafka no longer keeps them where version
    0.14.0 does, so that an upgrade fails at start instead of fetching with
    the defaults unnoticed.
    """
    for name in (_CONSUMER_MIN_BYTES, _CONSUMER_MAX_WAIT_MS):
        if not hasattr(consumer, name):
            raise RuntimeError(
                f"aiokafka's consumer has no attribute {name}: this aiokafka version keeps its fetch settings "
                "elsewhere, so FLYTE_STATE_FETCH_MIN_BYTES and FLYTE_STATE_FETCH_MAX_WAIT_SECONDS cannot be applied"
            )

    setattr(consumer, _CONSUMER_MIN_BYTES, settings.min_bytes)
    setattr(consumer, _CONSUMER_MAX_WAIT_MS, settings.max_wait_ms)


def _apply_fetch_settings_hook() -> None:
    """Wrap faust's builder of the group consumer, once per process, so that it applies an app's FetchSettings."""
    wrap_once(AIOKafkaConsumerThread, "_create_worker_consumer", _make_create_with_fetch_settings)


def _make_create_with_fetch_settings(original):
    def create_worker_consumer_with_fetch_settings(self, transport):
        consumer = original(self, transport)
        settings = fetch_settings_of(self.app)
        if settings is not None:
            apply_to_consumer(consumer, settings)
            log.info(
                "faust consumer of app %s fetches at least %d bytes or waits at most %d ms",
                self.app.conf.id,
                settings.min_bytes,
                settings.max_wait_ms,
            )
        return consumer

    return create_worker_consumer_with_fetch_settings
