"""Whether a state record fits what the worker's producer and its changelog and state topics accept.

Two limits apply to every record the worker writes. librdkafka rejects a
record whose uncompressed size exceeds the producer's ``message.max.bytes``
(FLYTE_STATE_MAX_RECORD_BYTES). The broker rejects a record batch whose size
on the wire, compressed, exceeds the topic's ``max.message.bytes`` or
``segment.bytes``. The worker's producer compresses with lz4, so a record
above the topics' limit can still fit. Only such a record is compressed
here, with cramjam's lz4 frame codec, as an estimate of librdkafka's.
"""

from __future__ import annotations

from typing import Optional

import cramjam
from google.protobuf.message import Message

# Bytes that a record batch of one record takes besides the record's key and
# value: the batch header (61 bytes in format v2), the record's length,
# attribute, timestamp and offset deltas and the key and value lengths, with
# room to spare.
RECORD_OVERHEAD_BYTES = 512


def _lz4_estimate_bytes(size: int) -> int:
    """Return a bound on what lz4 makes of ``size`` bytes, with a 1/128 margin over the compressed size.

    lz4.h bounds lz4 output at size + size/255 + 16 bytes, and the frame
    codecs of cramjam and librdkafka may differ by a few bytes per block.
    """
    return size + size // 128


class RecordSizeLimit:
    """The producer's and the topics' limits, applied to one record at a time."""

    def __init__(self, producer_bytes: int, topic_bytes: int) -> None:
        # Largest record, uncompressed, that the producer sends.
        self.producer_bytes = producer_bytes
        # Smallest max.message.bytes or segment.bytes of the changelog and state topics.
        self.topic_bytes = topic_bytes

    def violation(self, key: str, state: Message) -> Optional[str]:
        """Describe why the record of ``key`` with value ``state`` does not fit; None when it fits.

        Keys are ASCII, as processor.ids validates them, so their length is
        their size in bytes.
        """
        size = len(key) + state.ByteSize()
        if size + RECORD_OVERHEAD_BYTES > self.producer_bytes:
            return (
                f"would take {size} bytes with its key, more than the {self.producer_bytes} bytes "
                "of FLYTE_STATE_MAX_RECORD_BYTES"
            )
        if _lz4_estimate_bytes(size) + RECORD_OVERHEAD_BYTES <= self.topic_bytes:
            return None

        compressed = len(key) + len(cramjam.lz4.compress(state.SerializeToString()))
        if _lz4_estimate_bytes(compressed) + RECORD_OVERHEAD_BYTES <= self.topic_bytes:
            return None
        return (
            f"would take {size} bytes with its key, about {compressed} compressed with lz4, more than the "
            f"{self.topic_bytes} bytes that its changelog and state topics accept"
        )
