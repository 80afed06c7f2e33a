"""Whether a state record fits what the worker's producer and its changelog and state topics accept.

Two limits apply to every record the worker writes. librdkafka rejects a
record whose uncompressed size exceeds the producer's ``message.max.bytes``
(FLYTE_STATE_MAX_RECORD_BYTES). The broker rejects a record batch whose size
on the wire exceeds the topic's ``max.message.bytes`` or ``segment.bytes``.
The worker's state producer compresses with lz4 at STATE_LZ4_LEVEL, and a
topic whose ``compression.type`` is ``producer`` or ``lz4`` keeps those
batches as they are, so a record above the topics' limit can still fit.
Only such a record is compressed here, with cramjam's lz4 frame codec at the
same level, as an estimate of librdkafka's. A topic with another
compression type recompresses each batch, and then the uncompressed size
counts, with room for the codec's growth.
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

# The lz4 level that the state producer sets (``compression.level``): LZ4F's
# fast mode.
STATE_LZ4_LEVEL = 0


def _lz4_estimate_bytes(compressed: int) -> int:
    """Return a bound on librdkafka's lz4 output for data that cramjam compressed to ``compressed`` bytes.

    The two frame codecs differ in block handling. For map task records
    with log URIs, the broker stored librdkafka's batches up to 0.9% smaller
    than cramjam's fast mode made them. The bound allows them to be 3% larger.
    """
    return compressed + compressed // 32


def _recompressed_bound_bytes(size: int) -> int:
    """Return a bound on what any codec a broker may recompress with makes of ``size`` bytes.

    Snappy, the one that grows incompressible data the most, stays below
    size + size/6 + 32 bytes; gzip, lz4 and zstd grow it less.
    """
    return size + size // 6 + 32


class RecordSizeLimit:
    """The producer's and the topics' limits, applied to one record at a time."""

    def __init__(self, producer_bytes: int, topic_bytes: int, *, topics_keep_lz4: bool = True) -> None:
        # Largest record, uncompressed, that the producer sends.
        self.producer_bytes = producer_bytes
        # Smallest max.message.bytes or segment.bytes of the changelog and state topics.
        self.topic_bytes = topic_bytes
        # Whether every one of those topics stores the producer's lz4 batches unchanged.
        self.topics_keep_lz4 = topics_keep_lz4

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
        if _recompressed_bound_bytes(size) + RECORD_OVERHEAD_BYTES <= self.topic_bytes:
            return None
        if not self.topics_keep_lz4:
            return (
                f"would take {size} bytes with its key, more than the {self.topic_bytes} bytes that its "
                "changelog and state topics accept after they compress it again"
            )

        compressed = len(key) + len(cramjam.lz4.compress(state.SerializeToString(), level=STATE_LZ4_LEVEL))
        if _lz4_estimate_bytes(compressed) + RECORD_OVERHEAD_BYTES <= self.topic_bytes:
            return None
        return (
            f"would take {size} bytes with its key, about {compressed} compressed with lz4, more than the "
            f"{self.topic_bytes} bytes that its changelog and state topics accept"
        )
