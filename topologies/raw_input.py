"""A faust schema that hands input records to the agent as they arrived, without faust's codec registry.

The worker reads key, value and headers from ``event.message`` and decodes
them itself (processor/routing.py). A topic with the ``raw`` serializers still
sends every record's key and value through faust's serializer registry,
which looks up the codec, checks for model payloads and reads settings for
each of them. That cost about 3% of the worker's main thread in a py-spy
profile of faust-streaming 0.15.3 (docs/benchmarks.md).

Contract: the event's ``key`` and ``value`` are the record's bytes, or None,
and ``headers`` are the record's headers, exactly as faust's raw codec
returns them. Nothing raises a decode error, so every record reaches the
agent, which dead-letters what it cannot decode.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, EventT, Message


class RawInputSchema(faust.Schema):
    """Schema of the input topics: events carry the record's key and value bytes unchanged."""

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(self, app: AppT, **options: Any):
        """Return the decoder that faust's conductor calls for each fetched record.

        ``options`` (the decode-error callbacks and propagation default of
        faust's own schema) do not apply, because this decoder parses nothing
        and so raises no decode error.
        """
        event_class = app.conf.Event

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode
