"""Delivery: the per-batch record of delivery reports that gates acknowledgements."""

from __future__ import annotations

from topologies.state_producer import Delivery


class Report:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes = b"k") -> None:
        self._topic, self._partition, self._offset, self._key = topic, partition, offset, key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key


def test_successful_reports_keep_last_offset_per_partition():
    delivery = Delivery()
    delivery.pending = 3

    delivery.on_delivery(None, Report("changelog", 0, 10))
    delivery.on_delivery(None, Report("changelog", 0, 11))
    delivery.on_delivery(None, Report("changelog", 1, 4))

    assert delivery.pending == 0
    assert delivery.offsets == {("changelog", 0): 11, ("changelog", 1): 4}
    assert delivery.failures == []


def test_failed_report_is_kept_and_counted():
    delivery = Delivery()
    delivery.pending = 2

    delivery.on_delivery("MSG_SIZE_TOO_LARGE", Report("state", 2, -1, b"p:d:a"))

    assert delivery.pending == 1
    assert delivery.failures == ["state[2] key b'p:d:a': MSG_SIZE_TOO_LARGE"]
    assert delivery.offsets == {}
