"""The shared streams reach their expected facts when published twice and in reverse order."""

from __future__ import annotations

import pytest

from processor import expectations
from processor.publisher import EventPublisher
from processor.streamfile import read_stream
from support import stream_files, wait_for_facts

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stream", stream_files(), ids=lambda path: path.stem)
def test_reversed_twice_reaches_expected_state(stream, module_settings, module_worker):
    events = [line.event for line in read_stream(str(stream))]
    publisher = EventPublisher(module_settings)
    for event in [*reversed(events), *reversed(events)]:
        publisher.publish_event(event)
    publisher.flush()

    expected = expectations.load(stream.with_suffix(".expect.json"))
    failures = wait_for_facts(module_settings, expected, module_worker)

    assert failures == []
