"""A fix for faust-streaming 0.15.3's offset commits after gaps, applied when the worker builds its app.

faust marks the offsets between two records as a gap when they are not
consecutive (transaction markers and compacted records leave such gaps), and
its gap ranges include the next record's offset. That record's offset then
reaches the list of acknowledged offsets twice. ``Consumer._new_offset``
commits only the first run of consecutive offsets, and a duplicate ends each
run, so the committed offset falls behind and, once a duplicate sits below
the committed offset, stops for good. faust-streaming's tracker has the same
kind of stall as issue 606, "Wrong offset commit in case of gaps".

The fix removes duplicates and offsets below the committed one before faust's
own computation runs. It adds no offset to the acknowledged list, so it never
commits past a record that the agent has not handled; the replay in
tests/unit/test_faust_fixes.py checks that.
"""

from __future__ import annotations

import functools

from faust.transport.consumer import Consumer

_PATCHED_MARK = "_flyte_state_dedupes_acked_offsets"


def apply_commit_gap_fix() -> None:
    """Wrap faust's Consumer._new_offset once per process."""
    original = Consumer._new_offset
    if getattr(original, _PATCHED_MARK, False):
        return

    @functools.wraps(original)
    def new_offset_without_duplicates(self, tp):
        acked = self._acked[tp]
        if acked:
            committed = self._committed_offset[tp]
            unique = sorted({offset for offset in acked if committed is None or offset >= committed})
            acked[:] = unique
            self._acked_index[tp].intersection_update(unique)
        return original(self, tp)

    setattr(new_offset_without_duplicates, _PATCHED_MARK, True)
    Consumer._new_offset = new_offset_without_duplicates
