"""faust's Monitor sensor without the per-event statistics that the worker never reads.

faust calls its Monitor four times for each record: when the consumer hands
it over, when the stream starts and ends the event, and when the record is
acknowledged. The Monitor counts messages and events per topic, stream and
task, and keeps their run times, for faust's web views, which the worker
disables. Those calls cost about 2% of the worker's main thread in a py-spy
profile of faust-streaming 0.15.3 (docs/benchmarks.md).

Contract: this monitor still keeps what faust and the worker read from it:
``stream_inbound_time`` (faust's aiokafka driver logs a stream that stopped
taking events from it), ``tp_committed_offsets`` (the consumer-lag gauge of
topologies/worker_metrics.py) and ``tp_end_offsets``. Every other per-event
statistic of faust's Monitor stays at zero, and the commit, send, table,
rebalance and web statistics are kept as faust keeps them.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Optional

from faust.sensors import Monitor


class LeanMonitor(Monitor):
    """A Monitor that records, per event, only when its partition's stream last took one."""

    def on_message_in(self, tp, offset: int, message) -> None:
        """Keep nothing: the message counts serve only faust's web views."""

    def on_stream_event_in(self, tp, offset: int, stream, event) -> Optional[dict[str, Any]]:
        """Record when the partition's stream took an event; return no state, so ``on_stream_event_out`` skips it."""
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_message_out(self, tp, offset: int, message) -> None:
        """Keep nothing: the run times serve only faust's web views."""
